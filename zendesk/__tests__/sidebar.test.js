import { jest } from '@jest/globals';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { API_KEY_PLACEHOLDER, Bridge } from '../assets/bridge.js';
import { countSegments } from '../assets/segments.js';
import { POLL_DELAYS_MS, Sidebar } from '../assets/sidebar.js';

const BRIDGE = 'https://bridge.acme.example';
const TICKET = 1001;
const AGENT = 'ana.agent@example.com';

// A preview as the bridge's POST /api/v1/previews answers it.
function previewBody(overrides = {}) {
    return {
        ticket_id: String(TICKET),
        end_user_number: '*******0100',
        message: 'Hello Rosa, about your ticket 1001.',
        segments: { encoding: 'GSM-7', characters: 35, units: 35, segments: 1, max_segments: 10 },
        can_send: true,
        blocked: null,
        send_window: null,
        ...overrides
    };
}

const OUTSIDE_WINDOW = {
    open: false,
    window: '08:00-21:00',
    time_zone: 'America/Los_Angeles',
    local_time: '06:12',
    opens_at: '2026-11-25T16:00:00Z',
    reason: 'Scheduled for 08:00 America/Los_Angeles (send window 08:00-21:00)'
};

/** A stand-in for the ZAF client: `request` answers from a script, like the framework's proxy. */
function zafClient(answers) {
    const queue = [...answers];
    return {
        request: jest.fn(async () => {
            const next = queue.shift();
            if (!next) {
                throw new Error('no scripted answer');
            }
            if (next.network) {
                // The framework rejects with the failed exchange: no status, no body.
                throw { status: 0, responseText: '' };
            }
            const answer = { status: next.status, responseJSON: next.body, responseText: JSON.stringify(next.body) };
            if (next.status >= 300) {
                throw answer;
            }
            return answer;
        })
    };
}

function ok(body, status = 200) {
    return { status, body };
}

async function mount(answers, options = {}) {
    const client = zafClient(answers);
    const root = document.createElement('main');
    document.body.append(root);
    let keys = 0;
    const sidebar = new Sidebar({
        bridge: new Bridge(client, `${BRIDGE}/`),
        root,
        ticketId: TICKET,
        agentEmail: AGENT,
        sleep: async () => {},
        newKey: (ticketId) => `zendesk-${ticketId}-key${++keys}`,
        ...options
    });
    await sidebar.load();
    return { client, root, sidebar };
}

function find(root, id) {
    return root.querySelector(`[data-id="${id}"]`);
}

function text(root, id) {
    const found = find(root, id);
    return found ? found.textContent.replace(/\s+/g, ' ').trim() : null;
}

function readable(root, id) {
    const found = find(root, id);
    return found ? Array.from(found.querySelectorAll('p'), (p) => p.textContent).join(' ') : null;
}

function sent(client, call) {
    const options = client.request.mock.calls[call][0];
    return { options, body: options.data ? JSON.parse(options.data) : undefined };
}

async function type(root, value) {
    const area = find(root, 'message');
    area.value = value;
    area.dispatchEvent(new Event('input'));
}

async function clickSend(root) {
    find(root, 'send').click();
    for (let i = 0; i < 10; i++) {
        await Promise.resolve();
    }
}

function sharedVectors() {
    let folder = path.dirname(fileURLToPath(import.meta.url));
    while (!fs.existsSync(path.join(folder, 'tests', 'fixtures', 'sms_segments.json'))) {
        folder = path.dirname(folder);
    }
    return JSON.parse(fs.readFileSync(path.join(folder, 'tests', 'fixtures', 'sms_segments.json'), 'utf8'));
}

afterEach(() => {
    document.body.replaceChildren();
});

describe('on open', () => {
    it('previews the send for this ticket through the proxy, the key only as a secure-setting placeholder', async () => {
        const { client, root } = await mount([ok(previewBody())]);

        const { options, body } = sent(client, 0);
        expect(options).toMatchObject({
            url: `${BRIDGE}/api/v1/previews`,
            type: 'POST',
            secure: true,
            cors: false,
            contentType: 'application/json'
        });
        expect(options.headers.Authorization).toBe(`Bearer ${API_KEY_PLACEHOLDER}`);
        expect(API_KEY_PLACEHOLDER).toBe('{{setting.bridge_api_key}}');
        expect(body).toEqual({ ticket_id: '1001' });
        expect(text(root, 'number')).toBe('*******0100');
        expect(find(root, 'message').value).toBe('Hello Rosa, about your ticket 1001.');
        expect(text(root, 'counter')).toBe('35 characters, GSM-7: 1 of 10 SMS segments');
        expect(find(root, 'send').disabled).toBe(false);
        expect(text(root, 'send')).toBe('Send');
        expect(find(root, 'blocked')).toBeNull();
        expect(find(root, 'template')).toBeNull();
    });

    it.each([
        ['no number', { end_user_number: null, blocked: { status: 'skipped', reason: 'The requester has no phone number.' } }, 'Nothing to text', 'No number to text'],
        ['opted out', { blocked: { status: 'opted_out', reason: 'The number is on the opt-out list.' } }, 'The customer opted out of SMS', '*******0100'],
        ['opt-out tag', { blocked: { status: 'opted_out', reason: 'The requester is tagged sms_opt_out.' } }, 'The customer opted out of SMS', '*******0100'],
        ['an unusable number', { blocked: { status: 'failed', reason: 'Not a valid US number: *******0958' } }, 'This SMS cannot be sent', '*******0100']
    ])('says why it cannot send: %s', async (name, overrides, title, number) => {
        const { root } = await mount([ok(previewBody({ can_send: false, ...overrides }))]);

        expect(readable(root, 'blocked')).toBe(`${title} ${overrides.blocked.reason}`);
        expect(text(root, 'number')).toBe(number);
        expect(find(root, 'send').disabled).toBe(true);
    });

    it('outside the window offers to schedule, or to send now for a customer who just wrote', async () => {
        const { client, root } = await mount([ok(previewBody({ send_window: OUTSIDE_WINDOW })), ok({ id: 7, status: 'sent', chat_id: '114' })]);

        expect(readable(root, 'window')).toContain('It is 06:12 for the customer (America/Los_Angeles); texts go out between 08:00-21:00.');
        expect(text(root, 'send')).toBe('Schedule');
        const box = find(root, 'send-now');
        box.checked = true;
        box.dispatchEvent(new Event('change'));
        expect(text(root, 'send')).toBe('Send');
        await clickSend(root);
        expect(sent(client, 1).body.send_window).toBe('ignore');
    });

    it('shows why the bridge could not preview', async () => {
        const { root } = await mount([{ status: 401, body: { error: 'Unauthorized' } }]);
        expect(readable(root, 'load-error')).toContain('The bridge refused the API key (HTTP 401)');
    });

    it('says so when the answer is not the bridge\u2019s', async () => {
        const client = {
            request: jest.fn(async () => {
                throw { status: 502, responseText: '<html>Bad Gateway</html>' };
            })
        };
        const root = document.createElement('main');
        const sidebar = new Sidebar({ bridge: new Bridge(client, BRIDGE), root, ticketId: TICKET, agentEmail: AGENT });
        await sidebar.load();
        expect(readable(root, 'load-error')).toContain('HTTP 502 without a JSON object');
    });
});

describe('templates', () => {
    it('a picker appears when the bridge offers named templates; a pick previews again and is sent', async () => {
        const offered = { templates: [{ name: 'opened', label: 'Ticket opened' }, 'awaiting'], template: 'opened' };
        const { client, root } = await mount([
            ok(previewBody(offered)),
            ok(previewBody({ ...offered, template: 'awaiting', message: 'We are waiting for your answer.' })),
            ok({ id: 8, status: 'sent', chat_id: '115' })
        ]);

        const picker = find(root, 'template');
        expect(Array.from(picker.options, (o) => [o.value, o.textContent])).toEqual([
            ['opened', 'Ticket opened'],
            ['awaiting', 'awaiting']
        ]);
        picker.value = 'awaiting';
        picker.dispatchEvent(new Event('change'));
        for (let i = 0; i < 10; i++) {
            await Promise.resolve();
        }
        expect(sent(client, 1).body).toEqual({ ticket_id: '1001', template: 'awaiting' });
        expect(find(root, 'message').value).toBe('We are waiting for your answer.');
        expect(text(root, 'counter')).toBe('31 characters, GSM-7: 1 of 10 SMS segments');
        expect(find(root, 'template').value).toBe('awaiting');
        await clickSend(root);
        expect(sent(client, 2).body.template).toBe('awaiting');
    });
});

describe('the counter', () => {
    it.each(sharedVectors().map((v) => [v.name, v]))('agrees with the bridge on %s', (name, vector) => {
        const count = countSegments(vector.text);
        expect([count.encoding, count.units, count.segments]).toEqual([vector.encoding, vector.units, vector.segments]);
    });

    it('counts as the agent types, names the character that forces UCS-2, and stops an over-long text', async () => {
        const { root } = await mount([ok(previewBody({ segments: { max_segments: 2 } }))]);

        await type(root, 'It\u2019s ready');
        expect(text(root, 'counter')).toBe('10 characters, UCS-2: 1 of 2 SMS segments');
        expect(text(root, 'ucs2-hint')).toContain('(such as \u2019)');
        await type(root, 'x'.repeat(307));
        expect(text(root, 'counter')).toBe('Too long: 3 SMS segments; the limit is 2. Shorten the message.');
        expect(find(root, 'send').disabled).toBe(true);
        await type(root, '   ');
        expect(find(root, 'send').disabled).toBe(true);
    });
});

describe('sending', () => {
    it('sends as the agent with one idempotency key and shows the chat', async () => {
        const { client, root } = await mount([ok(previewBody()), ok({ id: 7, status: 'sent', chat_id: '114' })]);

        await type(root, 'Edited text');
        await clickSend(root);
        const { options, body } = sent(client, 1);
        expect(options.url).toBe(`${BRIDGE}/api/v1/sends?wait=8`);
        expect(options.headers['Idempotency-Key']).toBe('zendesk-1001-key1');
        expect(body).toEqual({ ticket_id: '1001', agent_email: AGENT, message: 'Edited text' });
        expect(find(root, 'outcome').dataset.outcome).toBe('sent');
        expect(readable(root, 'sent')).toBe('Sent CCAI Platform accepted the SMS. Chat 114.');
    });

    it.each([
        [422, { id: 9, status: 'opted_out', error: 'Consumer has opted out of SMS.' }, 'notSent', 'not-sent', 'The customer opted out of SMS.'],
        [200, { id: 9, status: 'unknown', error: 'The answer was lost.' }, 'unknown', 'unknown', 'most likely delivered'],
        [202, { id: 9, status: 'scheduled', scheduled_for: '2026-11-25T16:00:00Z' }, 'scheduled', 'scheduled', 'It goes out when']
    ])('shows a %s answer as it is (%j)', async (status, answer, outcome, id, words) => {
        const { root } = await mount([ok(previewBody()), { status, body: answer }]);
        await clickSend(root);
        expect(find(root, 'outcome').dataset.outcome).toBe(outcome);
        expect(readable(root, id)).toContain(words);
    });

    it('reads a pending send again until it has an outcome', async () => {
        const sleep = jest.fn(async () => {});
        const { client, root } = await mount(
            [ok(previewBody()), ok({ id: 10, status: 'sending' }, 202), ok({ id: 10, status: 'sending' }), ok({ id: 10, status: 'sent', chat_id: '120' })],
            { sleep }
        );
        await clickSend(root);
        for (let i = 0; i < 20; i++) {
            await Promise.resolve();
        }
        expect(sleep.mock.calls.map(([ms]) => ms)).toEqual(POLL_DELAYS_MS.slice(0, 2));
        expect(sent(client, 2).options).toMatchObject({ url: `${BRIDGE}/api/v1/sends/10`, type: 'GET' });
        expect(readable(root, 'sent')).toContain('Chat 120.');
    });

    it('a pending send that stays pending says where the outcome will appear', async () => {
        const { root } = await mount([ok(previewBody()), ok({ id: 11, status: 'queued' }, 202), { network: true }, ok({ id: 11, status: 'queued' }), ok({ id: 11, status: 'queued' })]);
        await clickSend(root);
        for (let i = 0; i < 30; i++) {
            await Promise.resolve();
        }
        expect(readable(root, 'pending')).toContain('CCAI SMS Status');
        expect(find(root, 'send-another').disabled).toBe(false);
    });

    it('a double click sends once', async () => {
        const { client, root, sidebar } = await mount([ok(previewBody()), ok({ id: 7, status: 'sent', chat_id: '114' })]);
        find(root, 'send').click();
        // The second click of a double click can land before the button is drawn disabled.
        sidebar.send();
        find(root, 'send').click();
        for (let i = 0; i < 10; i++) {
            await Promise.resolve();
        }
        expect(client.request).toHaveBeenCalledTimes(2);
    });

    it('a failed request keeps its key, so trying again cannot text twice; an outcome brings a new key', async () => {
        const { client, root } = await mount([
            ok(previewBody()),
            { network: true },
            ok({ id: 7, status: 'sent', chat_id: '114' }),
            ok({ id: 8, status: 'sent', chat_id: '115' })
        ]);
        await clickSend(root);
        expect(readable(root, 'send-error')).toContain('could not be reached');
        await clickSend(root);
        expect(sent(client, 1).options.headers['Idempotency-Key']).toBe('zendesk-1001-key1');
        expect(sent(client, 2).options.headers['Idempotency-Key']).toBe('zendesk-1001-key1');
        find(root, 'send-another').click();
        await clickSend(root);
        expect(sent(client, 3).options.headers['Idempotency-Key']).toBe('zendesk-1001-key2');
    });

    it('a key reused with another body is explained, not sent again', async () => {
        const { root } = await mount([ok(previewBody()), { status: 409, body: { error: 'This Idempotency-Key was already used with a different request body.' } }]);
        await clickSend(root);
        expect(readable(root, 'send-error')).toContain('already submitted with different text');
    });
});
