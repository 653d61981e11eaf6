/*
 * The ticket sidebar: shows the number the bridge would text (masked) and why it cannot when it
 * cannot, lets the agent pick a template and edit the message with a live SMS-segment counter,
 * sends it through the bridge and shows the outcome as it arrives. The same behaviour as the
 * Salesforce action (salesforce/.../lwc/ccaiSendSms).
 *
 * A double click texts once: every request for one composed message carries the same
 * Idempotency-Key, and the bridge answers a repeated key with the send it already has. The key is
 * replaced only once an outcome has arrived; a failed request (timeout, network) keeps it, so that
 * trying again cannot send a second SMS if the first one did reach the bridge.
 */
import { LABELS, format } from './labels.js';
import { countSegments, UCS_2 } from './segments.js';

// After the bridge's own 8-second wait, a send still under way is read again after 1, 2 and 4
// seconds; past that the agent is told the outcome will appear on the ticket.
export const POLL_DELAYS_MS = [1000, 2000, 4000];
// The bridge's default [message] max_segments, for a preview that has no count.
const DEFAULT_MAX_SEGMENTS = 10;

export function newIdempotencyKey(ticketId, random = () => globalThis.crypto.randomUUID()) {
    return `zendesk-${ticketId}-${random()}`;
}

function pause(milliseconds) {
    return new Promise((resolve) => {
        setTimeout(resolve, milliseconds);
    });
}

/** An element with attributes and children (strings become text: nothing is parsed as HTML). */
function h(tag, attributes = {}, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
        if (value === false || value === null || value === undefined) {
            continue;
        }
        if (name.startsWith('on')) {
            element.addEventListener(name.slice(2), value);
        } else if (name === 'value') {
            element.value = value;
        } else if (name === 'checked') {
            element.checked = Boolean(value);
        } else {
            element.setAttribute(name, value === true ? '' : String(value));
        }
    }
    for (const child of children.flat()) {
        if (child !== null && child !== undefined && child !== false) {
            element.append(child instanceof Node ? child : document.createTextNode(String(child)));
        }
    }
    return element;
}

function notice(kind, id, title, ...lines) {
    return h(
        'div',
        { class: `notice notice-${kind}`, 'data-id': id, role: kind === 'error' ? 'alert' : 'status' },
        h('p', { class: 'notice-title' }, title),
        ...lines.filter(Boolean).map((line) => h('p', {}, line))
    );
}

function localTime(iso) {
    if (!iso) {
        return '';
    }
    const moment = new Date(iso);
    return Number.isNaN(moment.getTime())
        ? iso
        : moment.toLocaleString(undefined, { weekday: 'short', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

export class Sidebar {
    /**
     * `bridge`: a Bridge; `root`: the element to draw in; `ticketId` and `agentEmail` from the
     * framework; `resize` is called after each drawing; `sleep` and `newKey` are for tests.
     */
    constructor({ bridge, root, ticketId, agentEmail, resize = () => {}, sleep = pause, newKey = newIdempotencyKey }) {
        this.bridge = bridge;
        this.root = root;
        this.ticketId = ticketId;
        this.agentEmail = agentEmail;
        this.resize = resize;
        this.sleep = sleep;
        this.newKey = newKey;
        this.state = { loading: true };
        this.closed = false;
    }

    async load(template) {
        this.state = { loading: true, template: template || null };
        this.render();
        const key = this.newKey(this.ticketId);
        try {
            const preview = await this.bridge.preview(this.ticketId, template);
            this.state = {
                preview,
                template: template || preview.template || null,
                message: preview.message || '',
                ignoreWindow: false,
                idempotencyKey: key
            };
        } catch (error) {
            this.state = { loadError: error.message || String(error), template: template || null };
        }
        this.render();
    }

    close() {
        // The ticket was left: any polling still under way stops.
        this.closed = true;
    }

    // ---- What the agent does --------------------------------------------------------------

    async pickTemplate(name) {
        await this.load(name || null);
    }

    typeMessage(value) {
        this.state.message = value || '';
        // The textarea keeps its caret: only what depends on the text is drawn again.
        this.renderCounter();
    }

    toggleWindow(checked) {
        this.state.ignoreWindow = Boolean(checked);
        this.render();
    }

    async send() {
        // A second click that lands before the button is drawn disabled does nothing.
        if (this.sendDisabled()) {
            return;
        }
        const state = this.state;
        state.sending = true;
        state.sendError = null;
        this.render();
        let result;
        try {
            result = await this.bridge.send({
                ticketId: this.ticketId,
                message: state.message,
                idempotencyKey: state.idempotencyKey,
                ignoreSendWindow: state.ignoreWindow,
                agentEmail: this.agentEmail,
                template: state.template
            });
        } catch (error) {
            // Not an outcome: keep the key, so that trying again returns this send if it got through.
            state.sendError = error.message || String(error);
            return;
        } finally {
            state.sending = false;
            this.render();
        }
        state.result = result;
        // The bridge has this send: the next message is a new one.
        state.idempotencyKey = this.newKey(this.ticketId);
        this.render();
        if (result.outcome === 'pending' && result.sendId !== null) {
            await this.poll(result.sendId);
        }
    }

    async poll(sendId) {
        this.state.polling = true;
        this.render();
        try {
            for (const delay of POLL_DELAYS_MS) {
                await this.sleep(delay);
                if (this.closed) {
                    return;
                }
                try {
                    const latest = await this.bridge.getSend(sendId);
                    this.state.result = latest;
                    if (latest.outcome !== 'pending') {
                        return;
                    }
                } catch {
                    // A failed read says nothing about the send: try again at the next step.
                }
            }
        } finally {
            this.state.polling = false;
            this.render();
        }
    }

    writeAnother() {
        Object.assign(this.state, { result: null, sendError: null, ignoreWindow: false });
        this.render();
    }

    // ---- What the sidebar shows ---------------------------------------------------------------

    count() {
        return countSegments(this.state.message || '');
    }

    maxSegments() {
        return (this.state.preview && this.state.preview.maxSegments) || DEFAULT_MAX_SEGMENTS;
    }

    outsideWindow() {
        const window = this.state.preview && this.state.preview.sendWindow;
        return Boolean(window && window.isOpen === false);
    }

    sendDisabled() {
        const { preview, sending, message } = this.state;
        return Boolean(
            sending || !preview || !preview.canSend || this.count().segments > this.maxSegments() || !(message || '').trim()
        );
    }

    counterText() {
        const count = this.count();
        if (count.characters === 0) {
            return LABELS.counterEmpty;
        }
        if (count.segments > this.maxSegments()) {
            return format(LABELS.overLimit, count.segments, this.maxSegments());
        }
        return format(LABELS.counter, count.characters, count.encoding, count.segments, this.maxSegments());
    }

    ucs2Hint() {
        // Name the first character that forces UCS-2: the agent rarely sees why otherwise.
        if (this.count().encoding !== UCS_2) {
            return null;
        }
        const culprit = Array.from(this.state.message).find((character) => countSegments(character).encoding === UCS_2);
        return culprit ? format(LABELS.ucs2Hint, culprit) : null;
    }

    render() {
        const state = this.state;
        let body;
        if (state.loading) {
            body = h('p', { class: 'muted', 'data-id': 'loading' }, LABELS.loading);
        } else if (state.loadError) {
            body = notice('error', 'load-error', LABELS.errorTitle, state.loadError);
        } else if (state.result) {
            body = this.outcomeView();
        } else {
            body = this.composeView();
        }
        this.root.replaceChildren(body);
        this.resize();
    }

    renderCounter() {
        const counter = this.root.querySelector('[data-id="counter"]');
        if (counter) {
            counter.textContent = this.counterText();
            counter.className = this.count().segments > this.maxSegments() ? 'help error' : 'help';
        }
        const hint = this.root.querySelector('[data-id="ucs2-hint"]');
        if (hint) {
            hint.textContent = this.ucs2Hint() || '';
        }
        const button = this.root.querySelector('[data-id="send"]');
        if (button) {
            button.disabled = this.sendDisabled();
        }
    }

    composeView() {
        const { preview, template, message, ignoreWindow, sending, sendError } = this.state;
        const window = preview.sendWindow;
        const blocked = preview.blocked;
        return h(
            'form',
            { 'data-id': 'compose', onsubmit: (event) => { event.preventDefault(); this.send(); } },
            h('dl', { class: 'to' }, h('dt', {}, LABELS.to), h('dd', { 'data-id': 'number' }, preview.endUserNumber || LABELS.noNumber)),
            blocked &&
                notice('error', 'blocked', LABELS.blockedTitles[blocked.status] || LABELS.blockedTitles.default, blocked.reason),
            this.outsideWindow() &&
                notice(
                    'warning',
                    'window',
                    LABELS.outsideWindowTitle,
                    format(LABELS.outsideWindow, window.localTime, window.timeZone, window.window),
                    window.reason,
                    format(LABELS.opensAt, localTime(window.opensAt))
                ),
            this.outsideWindow() &&
                preview.canSend &&
                h(
                    'label',
                    { class: 'check' },
                    h('input', {
                        type: 'checkbox',
                        'data-id': 'send-now',
                        checked: ignoreWindow,
                        disabled: sending,
                        onchange: (event) => this.toggleWindow(event.target.checked)
                    }),
                    LABELS.sendNowLabel
                ),
            preview.templates.length > 0 &&
                h(
                    'label',
                    { class: 'field' },
                    LABELS.templateLabel,
                    h(
                        'select',
                        { 'data-id': 'template', disabled: sending, onchange: (event) => this.pickTemplate(event.target.value) },
                        preview.templates.map((entry) =>
                            h('option', { value: entry.name, selected: entry.name === template }, entry.label)
                        )
                    )
                ),
            h(
                'label',
                { class: 'field' },
                LABELS.messageLabel,
                h('textarea', {
                    'data-id': 'message',
                    rows: 5,
                    value: message,
                    disabled: sending,
                    oninput: (event) => this.typeMessage(event.target.value)
                })
            ),
            h('p', { class: 'help', 'data-id': 'counter', 'aria-live': 'polite' }, this.counterText()),
            h('p', { class: 'help muted', 'data-id': 'ucs2-hint' }, this.ucs2Hint() || ''),
            sendError && notice('error', 'send-error', LABELS.errorTitle, sendError),
            h(
                'button',
                { type: 'submit', class: 'primary', 'data-id': 'send', disabled: this.sendDisabled() },
                sending ? LABELS.sending : this.outsideWindow() && !ignoreWindow ? LABELS.schedule : LABELS.send
            )
        );
    }

    outcomeView() {
        const { result, polling, preview } = this.state;
        let shown;
        if (polling) {
            shown = h('p', { class: 'muted', role: 'status' }, LABELS.checkingOutcome);
        } else if (result.outcome === 'sent') {
            shown = notice('success', 'sent', LABELS.sentTitle, format(LABELS.sent, result.chatId));
        } else if (result.outcome === 'notSent') {
            shown = notice('error', 'not-sent', LABELS.notSentTitle, LABELS.notSentStatuses[result.status] || '', result.error);
        } else if (result.outcome === 'unknown') {
            shown = notice('warning', 'unknown', LABELS.unknownTitle, LABELS.unknown, result.error);
        } else if (result.outcome === 'scheduled') {
            const reason = preview && preview.sendWindow ? preview.sendWindow.reason : null;
            shown = notice('info', 'scheduled', LABELS.scheduledTitle, format(LABELS.scheduled, localTime(result.scheduledFor)), reason);
        } else {
            shown = notice('warning', 'pending', LABELS.pendingTitle, LABELS.pending);
        }
        return h(
            'div',
            { 'data-id': 'outcome', 'data-outcome': result.outcome },
            shown,
            h('button', { type: 'button', 'data-id': 'send-another', disabled: polling, onclick: () => this.writeAnother() }, LABELS.sendAnother)
        );
    }
}
