/*
 * Every word the Send SMS action shows, in one place. To translate the action, move these into
 * Custom Labels (import LABEL from '@salesforce/label/c.Name') keeping the keys; the component only
 * reads LABELS and format().
 *
 * {0}, {1}, ... are filled in by format(), in order.
 */
export const LABELS = {
    title: 'Send SMS',
    loading: 'Checking what would be sent...',
    sending: 'Sending...',
    checkingOutcome: 'Waiting for CCAI Platform...',
    to: 'To',
    noNumber: 'No number to text',
    messageLabel: 'Message',
    templateLabel: 'Template',
    templateLanguage: 'The customer\u2019s language: {0}.',
    templateError: 'That template could not be previewed',
    previewing: 'Previewing the template...',
    previewLabel: 'What the customer receives',
    previewEmpty: 'Nothing yet: write the message or choose a template.',
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
    outsideWindow:
        'It is {0} for the customer ({1}); texts go out between {2}.',
    opensAt: 'Your time:',
    sendNowLabel: 'The customer just wrote to us: send now',
    sendNowHelp:
        'Only when the customer is waiting for our answer. Otherwise the SMS is scheduled for when the window opens.',

    send: 'Send',
    schedule: 'Schedule',
    cancel: 'Cancel',
    close: 'Close',
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
        'The answer from CCAI Platform was lost, so it was most likely delivered. Check the Case before sending again.',
    scheduledTitle: 'Scheduled',
    scheduled: 'It goes out when the customer\u2019s send window opens:',
    pendingTitle: 'Still being sent',
    pending:
        'The bridge has not heard back from CCAI Platform yet. The outcome will appear on the Case (CCAI SMS Status) when it does.',

    errorTitle: 'Something went wrong',
    unknownError: 'The bridge did not answer in a way the action understands.'
};

/** "a {0} b {1}" with the arguments in order; a missing argument leaves its placeholder empty. */
export function format(template, ...values) {
    return template.replace(/\{(\d+)\}/g, (match, index) => {
        const value = values[Number(index)];
        return value === undefined || value === null ? '' : String(value);
    });
}
