import { createElement } from '@lwc/engine-dom';
import fs from 'fs';
import path from 'path';
import CcaiSendSms, { POLL_DELAYS_MS } from 'c/ccaiSendSms';
import { CloseScreenEventName } from 'lightning/actions';
import { notifyRecordUpdateAvailable } from 'lightning/uiRecordApi';
import previewSend from '@salesforce/apex/BridgeSmsController.preview';
import sendSms from '@salesforce/apex/BridgeSmsController.send';
import getSend from '@salesforce/apex/BridgeSmsController.getSend';
import listTemplates from '@salesforce/apex/BridgeSmsController.templates';

jest.mock('@salesforce/apex/BridgeSmsController.preview', () => ({ default: jest.fn() }), { virtual: true });
jest.mock('@salesforce/apex/BridgeSmsController.send', () => ({ default: jest.fn() }), { virtual: true });
jest.mock('@salesforce/apex/BridgeSmsController.getSend', () => ({ default: jest.fn() }), { virtual: true });
jest.mock('@salesforce/apex/BridgeSmsController.templates', () => ({ default: jest.fn() }), { virtual: true });

const CASE_ID = '5005g00000SBX01AAH';

// Shaped as BridgeSmsController.Preview serialises.
function preview(overrides = {}) {
    return {
        ticketId: CASE_ID,
        endUserNumber: '*******0100',
        message: 'Hello from our support team about your case 00001026.',
        segments: { encoding: 'GSM-7', characters: 53, units: 53, segments: 1, maxSegments: 10 },
        canSend: true,
        blocked: null,
        sendWindow: null,
        templateChoice: { name: 'default', version: '5d41402a', language: null },
        ...overrides
    };
}

// Shaped as BridgeSmsController.Template serialises (GET /api/v1/templates).
const TEMPLATES = [
    { name: 'default', label: 'Default', description: 'The simple message.', isDefault: true },
    { name: 'awaiting_customer', label: 'Awaiting the customer', description: 'We need your reply.', isDefault: false },
    { name: 'resolved', label: 'Case resolved', description: null, isDefault: false }
];

const AWAITING_PREVIEW = {
    message: 'Hola, necesitamos su respuesta sobre el caso 00001026.',
    segments: { encoding: 'GSM-7', characters: 54, units: 54, segments: 1, maxSegments: 10 },
    templateChoice: { name: 'awaiting_customer', version: '9e107d9d', language: 'es' }
};

const OUTSIDE_WINDOW = {
    isOpen: false,
    window: '08:00-21:00',
    timeZone: 'America/Los_Angeles',
    localTime: '06:12',
    opensAt: '2026-11-25T16:00:00Z',
    reason: 'Scheduled for 08:00 America/Los_Angeles (send window 08:00-21:00)'
};

function apexError(message) {
    return { body: { message }, status: 500 };
}

async function flushPromises() {
    // Enough turns of the microtask queue for an Apex promise, its handlers and a re-render.
    for (let i = 0; i < 10; i++) {
        // eslint-disable-next-line no-await-in-loop
        await Promise.resolve();
    }
}

async function mount(answer = preview(), templates = TEMPLATES) {
    previewSend.mockResolvedValue(answer);
    listTemplates.mockResolvedValue(templates);
    const element = createElement('c-ccai-send-sms', { is: CcaiSendSms });
    element.recordId = CASE_ID;
    document.body.appendChild(element);
    await flushPromises();
    return element;
}

function find(element, id) {
    return element.shadowRoot.querySelector(`[data-id="${id}"]`);
}

// The text a person reads: separate elements are separate words (the compiled template keeps no
// whitespace between them).
function readable(node) {
    if (node.nodeType === Node.TEXT_NODE) {
        return node.textContent;
    }
    return Array.from(node.childNodes).map(readable).join(' ');
}

function text(element, id) {
    const found = find(element, id);
    return found ? readable(found).replace(/\s+/g, ' ').trim() : null;
}

async function typeMessage(element, value) {
    find(element, 'message').dispatchEvent(new CustomEvent('change', { detail: { value } }));
    await flushPromises();
}

async function clickSend(element) {
    find(element, 'send').click();
    await flushPromises();
}

function sharedVectors() {
    let folder = __dirname;
    while (!fs.existsSync(path.join(folder, 'tests', 'fixtures', 'sms_segments.json'))) {
        folder = path.dirname(folder);
    }
    return JSON.parse(fs.readFileSync(path.join(folder, 'tests', 'fixtures', 'sms_segments.json'), 'utf8'));
}

describe('c-ccai-send-sms', () => {
    afterEach(() => {
        while (document.body.firstChild) {
            document.body.removeChild(document.body.firstChild);
        }
        jest.clearAllMocks();
        jest.useRealTimers();
    });

    describe('on open', () => {
        it('previews the send for this Case and shows the masked number and the message', async () => {
            const element = await mount();

            expect(previewSend).toHaveBeenCalledWith({ caseId: CASE_ID, templateName: null });
            expect(text(element, 'number')).toBe('*******0100');
            expect(find(element, 'message').value).toBe('Hello from our support team about your case 00001026.');
            expect(text(element, 'counter')).toBe('53 characters, GSM-7: 1 of 10 SMS segments');
            expect(find(element, 'send').disabled).toBe(false);
            expect(find(element, 'send').label).toBe('Send');
            expect(find(element, 'blocked')).toBeNull();
            expect(find(element, 'window')).toBeNull();
        });

        it.each([
            [
                'no number',
                { endUserNumber: null, blocked: { status: 'skipped', reason: 'The Case has no phone number.' } },
                'Nothing to text',
                'No number to text'
            ],
            [
                'opted out',
                { blocked: { status: 'opted_out', reason: 'The number is on the opt-out list.' } },
                'The customer opted out of SMS',
                '*******0100'
            ],
            [
                'Do Not Call',
                { blocked: { status: 'skipped', reason: 'Contact is marked Do Not Call' } },
                'Nothing to text',
                '*******0100'
            ],
            [
                'an unusable number',
                { blocked: { status: 'failed', reason: 'Not a valid US number: *******0100' } },
                'This SMS cannot be sent',
                '*******0100'
            ]
        ])('says why it cannot send: %s', async (name, overrides, title, number) => {
            const element = await mount(preview({ canSend: false, ...overrides }));

            expect(text(element, 'blocked')).toBe(`${title} ${overrides.blocked.reason}`);
            expect(text(element, 'number')).toBe(number);
            expect(find(element, 'send').disabled).toBe(true);
        });

        it('outside the send window, says when it opens and offers to send now', async () => {
            const element = await mount(preview({ sendWindow: OUTSIDE_WINDOW }));

            const window = text(element, 'window');
            expect(window).toContain('It is 06:12 for the customer (America/Los_Angeles)');
            expect(window).toContain('between 08:00-21:00');
            expect(window).toContain('Scheduled for 08:00 America/Los_Angeles');
            expect(find(element, 'opens-at').value).toBe('2026-11-25T16:00:00Z');
            expect(find(element, 'send-now').checked).toBe(false);
            expect(find(element, 'send').label).toBe('Schedule');
            expect(find(element, 'send').disabled).toBe(false);
        });

        it('does not offer to send now when the send is blocked anyway', async () => {
            const element = await mount(
                preview({
                    canSend: false,
                    blocked: { status: 'opted_out', reason: 'Opted out.' },
                    sendWindow: OUTSIDE_WINDOW
                })
            );
            expect(find(element, 'window')).not.toBeNull();
            expect(find(element, 'send-now')).toBeNull();
        });

        it('shows why the preview failed', async () => {
            previewSend.mockRejectedValue(apexError('The bridge could not be reached: Read timed out'));
            listTemplates.mockResolvedValue(TEMPLATES);
            const element = createElement('c-ccai-send-sms', { is: CcaiSendSms });
            element.recordId = CASE_ID;
            document.body.appendChild(element);
            await flushPromises();

            expect(text(element, 'load-error')).toContain('The bridge could not be reached: Read timed out');
            expect(find(element, 'message')).toBeNull();
        });
    });

    describe('the template picker', () => {
        async function choose(element, name) {
            find(element, 'template').dispatchEvent(new CustomEvent('change', { detail: { value: name } }));
            await flushPromises();
        }

        it('lists the bridge\'s templates with the previewed one chosen', async () => {
            const element = await mount();

            const picker = find(element, 'template');
            expect(picker.options).toEqual([
                { label: 'Default', value: 'default' },
                { label: 'Awaiting the customer', value: 'awaiting_customer' },
                { label: 'Case resolved', value: 'resolved' }
            ]);
            expect(picker.value).toBe('default');
            expect(picker.fieldLevelHelp).toBe('The simple message.');
            expect(text(element, 'preview')).toBe('Hello from our support team about your case 00001026.');
        });

        it('previews the chosen template for this Case, with its count and language', async () => {
            const element = await mount();
            previewSend.mockResolvedValueOnce(preview(AWAITING_PREVIEW));
            await choose(element, 'awaiting_customer');

            expect(previewSend).toHaveBeenLastCalledWith({ caseId: CASE_ID, templateName: 'awaiting_customer' });
            expect(find(element, 'template').value).toBe('awaiting_customer');
            expect(find(element, 'message').value).toBe(AWAITING_PREVIEW.message);
            expect(text(element, 'preview')).toBe(AWAITING_PREVIEW.message);
            expect(text(element, 'counter')).toBe('54 characters, GSM-7: 1 of 10 SMS segments');
            expect(text(element, 'template-note')).toBe('The customer\u2019s language: es.');
        });

        it('the preview follows the agent\'s edits as they type', async () => {
            const element = await mount();
            await typeMessage(element, 'We\u2019ll call you at 3.');
            expect(text(element, 'preview')).toBe('We\u2019ll call you at 3.');
            expect(text(element, 'counter')).toBe('20 characters, UCS-2: 1 of 10 SMS segments');
            await typeMessage(element, '');
            expect(text(element, 'preview')).toBe('Nothing yet: write the message or choose a template.');
        });

        it('sends the chosen template with the text the agent saw', async () => {
            sendSms.mockResolvedValue({ sendId: 7, status: 'sent', outcome: 'sent', chatId: '114' });
            const element = await mount();
            previewSend.mockResolvedValueOnce(preview(AWAITING_PREVIEW));
            await choose(element, 'awaiting_customer');
            await clickSend(element);

            expect(sendSms.mock.calls[0][0]).toMatchObject({
                templateName: 'awaiting_customer',
                message: AWAITING_PREVIEW.message
            });
        });

        it('keeps only the answer for the latest choice when an earlier one answers late', async () => {
            const element = await mount();
            let answerAwaiting;
            previewSend
                .mockReturnValueOnce(
                    new Promise((resolve) => {
                        answerAwaiting = resolve;
                    })
                )
                .mockResolvedValueOnce(preview({ message: 'Your case is resolved.', templateChoice: { name: 'resolved' } }));
            await choose(element, 'awaiting_customer');
            expect(find(element, 'send').disabled).toBe(true);
            await choose(element, 'resolved');
            answerAwaiting(preview(AWAITING_PREVIEW));
            await flushPromises();

            expect(find(element, 'template').value).toBe('resolved');
            expect(find(element, 'message').value).toBe('Your case is resolved.');
            expect(find(element, 'send').disabled).toBe(false);
        });

        it('says when a template cannot be previewed and keeps the text it was showing', async () => {
            const element = await mount();
            previewSend.mockRejectedValueOnce(apexError('The bridge refused the request (HTTP 422): No template named resolved.'));
            await choose(element, 'resolved');

            expect(text(element, 'template-error')).toContain('No template named resolved.');
            expect(find(element, 'template').value).toBe('default');
            expect(find(element, 'message').value).toBe('Hello from our support team about your case 00001026.');
            expect(find(element, 'send').disabled).toBe(false);
        });

        it('hides the picker when the bridge offers no choice, and still sends its message', async () => {
            sendSms.mockResolvedValue({ sendId: 7, status: 'sent', outcome: 'sent', chatId: '114' });
            listTemplates.mockRejectedValueOnce(apexError('The bridge refused the request (HTTP 500): boom'));
            previewSend.mockResolvedValue(preview({ templateChoice: null }));
            const element = createElement('c-ccai-send-sms', { is: CcaiSendSms });
            element.recordId = CASE_ID;
            document.body.appendChild(element);
            await flushPromises();

            expect(find(element, 'template')).toBeNull();
            expect(find(element, 'load-error')).toBeNull();
            await clickSend(element);
            expect(sendSms.mock.calls[0][0].templateName).toBeNull();
        });

        it('a single template needs no picker', async () => {
            const element = await mount(preview(), [TEMPLATES[0]]);
            expect(find(element, 'template')).toBeNull();
        });
    });

    describe('the counter', () => {
        it.each(sharedVectors().map((vector) => [vector.name || vector.text.slice(0, 30), vector]))(
            'counts the shared vector "%s"',
            async (name, vector) => {
                const element = await mount();
                await typeMessage(element, vector.text);

                let expected = `${vector.characters} characters, ${vector.encoding}: ${vector.segments} of 10 SMS segments`;
                if (vector.segments === 0) {
                    expected = 'No text: write the message to send.';
                } else if (vector.segments > 10) {
                    expected = `Too long: ${vector.segments} SMS segments; the limit is 10. Shorten the message.`;
                }
                expect(text(element, 'counter')).toBe(expected);
                // Blank text and a text over the limit cannot be sent.
                expect(find(element, 'send').disabled).toBe(vector.segments === 0 || vector.segments > 10 || !vector.text.trim());
            }
        );

        it('uses the limit the bridge reports', async () => {
            const element = await mount(
                preview({ segments: { encoding: 'GSM-7', characters: 5, units: 5, segments: 1, maxSegments: 2 } })
            );
            await typeMessage(element, 'a'.repeat(307));
            expect(text(element, 'counter')).toBe('Too long: 3 SMS segments; the limit is 2. Shorten the message.');
            expect(find(element, 'counter').className).toContain('slds-text-color_error');
            expect(find(element, 'send').disabled).toBe(true);
        });

        it('names the character that forces UCS-2', async () => {
            const element = await mount();
            await typeMessage(element, 'We\u2019ll call you back');
            expect(text(element, 'counter')).toBe('19 characters, UCS-2: 1 of 10 SMS segments');
            expect(text(element, 'ucs2-hint')).toContain('(such as \u2019)');
        });
    });

    describe('sending', () => {
        it('sends the edited text with a key and shows the chat id', async () => {
            sendSms.mockResolvedValue({ sendId: 7, status: 'sent', outcome: 'sent', chatId: '114' });
            const element = await mount();
            await typeMessage(element, 'Your replacement ships today.');
            await clickSend(element);

            expect(sendSms).toHaveBeenCalledTimes(1);
            const call = sendSms.mock.calls[0][0];
            expect(call).toEqual({
                caseId: CASE_ID,
                message: 'Your replacement ships today.',
                templateName: 'default',
                idempotencyKey: expect.stringMatching(/^sfdc-5005g00000SBX01AAH-\S+$/),
                ignoreSendWindow: false
            });
            expect(call.idempotencyKey.length).toBeLessThanOrEqual(200);
            expect(find(element, 'outcome').dataset.outcome).toBe('sent');
            expect(text(element, 'outcome')).toBe('Sent CCAI Platform accepted the SMS. Chat 114.');
            expect(find(element, 'send')).toBeNull();
            expect(find(element, 'close')).not.toBeNull();
        });

        it('shows the reason a send was refused', async () => {
            sendSms.mockResolvedValue({
                sendId: 9,
                status: 'failed',
                outcome: 'notSent',
                error: 'Non-US phone number not allowed'
            });
            const element = await mount();
            await clickSend(element);

            expect(find(element, 'outcome').dataset.outcome).toBe('notSent');
            expect(text(element, 'outcome')).toBe(
                'Not sent CCAI Platform or the bridge refused it. Non-US phone number not allowed'
            );
        });

        it('says a lost answer most likely went out', async () => {
            sendSms.mockResolvedValue({ sendId: 11, status: 'unknown', outcome: 'unknown', error: 'Answer lost.' });
            const element = await mount();
            await clickSend(element);

            expect(text(element, 'outcome')).toContain('Possibly sent');
            expect(text(element, 'outcome')).toContain('Check the Case before sending again.');
        });

        it('says for when a send outside the window is scheduled', async () => {
            sendSms.mockResolvedValue({
                sendId: 8,
                status: 'scheduled',
                outcome: 'scheduled',
                scheduledFor: '2026-11-25T16:00:00Z'
            });
            const element = await mount(preview({ sendWindow: OUTSIDE_WINDOW }));
            await clickSend(element);

            expect(sendSms.mock.calls[0][0].ignoreSendWindow).toBe(false);
            expect(find(element, 'outcome').dataset.outcome).toBe('scheduled');
            expect(find(element, 'scheduled-for').value).toBe('2026-11-25T16:00:00Z');
            expect(text(element, 'outcome')).toContain('Scheduled for 08:00 America/Los_Angeles');
        });

        it('sends now when the agent says the customer just wrote', async () => {
            sendSms.mockResolvedValue({ sendId: 12, status: 'sent', outcome: 'sent', chatId: '115' });
            const element = await mount(preview({ sendWindow: OUTSIDE_WINDOW }));
            find(element, 'send-now').dispatchEvent(new CustomEvent('change', { detail: { checked: true } }));
            await flushPromises();
            expect(find(element, 'send').label).toBe('Send');

            await clickSend(element);
            expect(sendSms.mock.calls[0][0].ignoreSendWindow).toBe(true);
            expect(find(element, 'outcome').dataset.outcome).toBe('sent');
        });

        it('follows a pending send until it is sent', async () => {
            jest.useFakeTimers();
            sendSms.mockResolvedValue({ sendId: 10, status: 'queued', outcome: 'pending' });
            getSend
                .mockResolvedValueOnce({ sendId: 10, status: 'sending', outcome: 'pending' })
                .mockResolvedValueOnce({ sendId: 10, status: 'sent', outcome: 'sent', chatId: '116' });
            const element = await mount();
            await clickSend(element);

            expect(text(element, 'outcome')).toBe('Waiting for CCAI Platform...');
            expect(getSend).not.toHaveBeenCalled();

            jest.advanceTimersByTime(POLL_DELAYS_MS[0]);
            await flushPromises();
            expect(getSend).toHaveBeenCalledWith({ sendId: 10 });
            expect(text(element, 'outcome')).toBe('Waiting for CCAI Platform...');

            jest.advanceTimersByTime(POLL_DELAYS_MS[1]);
            await flushPromises();
            expect(getSend).toHaveBeenCalledTimes(2);
            expect(text(element, 'outcome')).toBe('Sent CCAI Platform accepted the SMS. Chat 116.');

            jest.advanceTimersByTime(60000);
            await flushPromises();
            expect(getSend).toHaveBeenCalledTimes(2);
        });

        it('after a few reads says the outcome will appear on the Case', async () => {
            jest.useFakeTimers();
            sendSms.mockResolvedValue({ sendId: 10, status: 'queued', outcome: 'pending' });
            getSend
                .mockRejectedValueOnce(apexError('Read timed out'))
                .mockResolvedValue({ sendId: 10, status: 'sending', outcome: 'pending' });
            const element = await mount();
            await clickSend(element);

            for (const delay of POLL_DELAYS_MS) {
                jest.advanceTimersByTime(delay);
                // eslint-disable-next-line no-await-in-loop
                await flushPromises();
            }
            expect(getSend).toHaveBeenCalledTimes(POLL_DELAYS_MS.length);
            expect(text(element, 'outcome')).toContain('Still being sent');
            expect(text(element, 'outcome')).toContain('The outcome will appear on the Case');
            expect(find(element, 'send-another').disabled).toBe(false);
        });

        it('stops following a send when the action is closed', async () => {
            jest.useFakeTimers();
            sendSms.mockResolvedValue({ sendId: 10, status: 'queued', outcome: 'pending' });
            const element = await mount();
            await clickSend(element);
            document.body.removeChild(element);

            jest.advanceTimersByTime(POLL_DELAYS_MS[0]);
            await flushPromises();
            expect(getSend).not.toHaveBeenCalled();
        });
    });

    describe('idempotency', () => {
        it('a double click sends once, with one key', async () => {
            let answer;
            sendSms.mockReturnValue(
                new Promise((resolve) => {
                    answer = resolve;
                })
            );
            const element = await mount();
            const button = find(element, 'send');
            button.click();
            button.click();
            await flushPromises();
            expect(find(element, 'send').disabled).toBe(true);
            find(element, 'send').click();

            answer({ sendId: 7, status: 'sent', outcome: 'sent', chatId: '114' });
            await flushPromises();
            expect(sendSms).toHaveBeenCalledTimes(1);
            expect(text(element, 'outcome')).toContain('Chat 114');
        });

        it('trying again after a failed request reuses the key', async () => {
            sendSms
                .mockRejectedValueOnce(apexError('The bridge could not be reached: Read timed out'))
                .mockResolvedValueOnce({ sendId: 7, status: 'sent', outcome: 'sent', chatId: '114' });
            const element = await mount();
            await clickSend(element);

            expect(text(element, 'send-error')).toContain('The bridge could not be reached: Read timed out');
            expect(find(element, 'send').disabled).toBe(false);

            await clickSend(element);
            expect(sendSms).toHaveBeenCalledTimes(2);
            expect(sendSms.mock.calls[1][0].idempotencyKey).toBe(sendSms.mock.calls[0][0].idempotencyKey);
        });

        it('a new message after an outcome gets a new key', async () => {
            sendSms.mockResolvedValue({ sendId: 7, status: 'sent', outcome: 'sent', chatId: '114' });
            const element = await mount();
            await clickSend(element);
            find(element, 'send-another').click();
            await flushPromises();

            expect(find(element, 'message').value).toBe('Hello from our support team about your case 00001026.');
            await clickSend(element);
            expect(sendSms).toHaveBeenCalledTimes(2);
            expect(sendSms.mock.calls[1][0].idempotencyKey).not.toBe(sendSms.mock.calls[0][0].idempotencyKey);
        });

        it('every opening of the action starts with its own key', async () => {
            sendSms.mockResolvedValue({ sendId: 7, status: 'sent', outcome: 'sent', chatId: '114' });
            await clickSend(await mount());
            await clickSend(await mount());
            expect(sendSms.mock.calls[1][0].idempotencyKey).not.toBe(sendSms.mock.calls[0][0].idempotencyKey);
        });
    });

    describe('closing', () => {
        it('Cancel closes the action', async () => {
            const element = await mount();
            const closed = jest.fn();
            element.addEventListener(CloseScreenEventName, closed);
            find(element, 'cancel').click();

            expect(closed).toHaveBeenCalledTimes(1);
            expect(notifyRecordUpdateAvailable).not.toHaveBeenCalled();
        });

        it('Close after an outcome refreshes the Case so its SMS fields show it', async () => {
            sendSms.mockResolvedValue({ sendId: 7, status: 'sent', outcome: 'sent', chatId: '114' });
            const element = await mount();
            const closed = jest.fn();
            element.addEventListener(CloseScreenEventName, closed);
            await clickSend(element);
            find(element, 'close').click();

            expect(closed).toHaveBeenCalledTimes(1);
            expect(notifyRecordUpdateAvailable).toHaveBeenCalledWith([{ recordId: CASE_ID }]);
        });
    });
});
