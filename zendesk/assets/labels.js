/*
 * Every word the sidebar shows, in one place, ready for the app's translations/ files.
 * {0}, {1}, ... are filled in by format(), in order.
 */
export const LABELS = {
    loading: 'Checking what would be sent...',
    sending: 'Sending...',
    checkingOutcome: 'Waiting for CCAI Platform...',
    to: 'To',
    noNumber: 'No number to text',
    templateLabel: 'Template',
    messageLabel: 'Message',
    counter: '{0} characters, {1}: {2} of {3} SMS segments',
    counterEmpty: 'No text: write the message to send.',
    overLimit: 'Too long: {0} SMS segments; the limit is {1}. Shorten the message.',
    ucs2Hint: 'A character outside the GSM alphabet (such as {0}) makes every segment hold 70 characters instead of 160.',

    blockedTitles: {
        skipped: 'Nothing to text',
        opted_out: 'The customer opted out of SMS',
        failed: 'This SMS cannot be sent',
        default: 'This SMS cannot be sent'
    },

    outsideWindowTitle: 'Outside the customer\u2019s send window',
    outsideWindow: 'It is {0} for the customer ({1}); texts go out between {2}.',
    opensAt: 'Opens (your time): {0}',
    sendNowLabel: 'The customer just wrote to us: send now',

    send: 'Send',
    schedule: 'Schedule',
    sendAnother: 'Write another message',

    sentTitle: 'Sent',
    sent: 'CCAI Platform accepted the SMS. Chat {0}.',
    notSentTitle: 'Not sent',
    notSentStatuses: {
        opted_out: 'The customer opted out of SMS.',
        skipped: 'There was nothing to text.',
        suppressed: 'The bridge held this SMS back.',
        failed: 'CCAI Platform or the bridge refused it.'
    },
    unknownTitle: 'Possibly sent',
    unknown:
        'The answer from CCAI Platform was lost, so it was most likely delivered. Check the ticket before sending again.',
    scheduledTitle: 'Scheduled',
    scheduled: 'It goes out when the customer\u2019s send window opens: {0}',
    pendingTitle: 'Still being sent',
    pending:
        'The bridge has not heard back from CCAI Platform yet. The outcome will appear on the ticket (CCAI SMS Status) when it does.',

    errorTitle: 'Something went wrong',
    unreachable: 'The bridge could not be reached through Zendesk\u2019s proxy (HTTP {0}).',
    badKey:
        'The bridge refused the API key (HTTP 401). An admin enters one of the bridge\u2019s BRIDGE_API_KEY values in this app\u2019s settings (Admin Center \u203a Apps and integrations \u203a Zendesk Support apps).',
    reused:
        'This message was already submitted with different text or options, so the bridge did not send it again. Check the ticket, then write another message.',
    busy: 'The bridge cannot do this right now: {0} Try again in a minute.',
    refused: 'The bridge refused the request (HTTP {0}): {1}',
    notBridge: 'The bridge answered HTTP {0} without a JSON object. Check the app\u2019s Bridge URL setting.',
    noSettings: 'The app has no Bridge URL: an admin sets it in the app\u2019s settings.'
};

/** "a {0} b {1}" with the arguments in order; a missing argument leaves its placeholder empty. */
export function format(template, ...values) {
    return template.replace(/\{(\d+)\}/g, (match, index) => {
        const value = values[Number(index)];
        return value === undefined || value === null ? '' : String(value);
    });
}
