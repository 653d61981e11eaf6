/*
 * The CCAI bridge's JSON API, called through the Zendesk Apps Framework's request proxy.
 *
 * The bridge's API key is a secure setting of the app: the browser never sees it. A request marked
 * `secure: true` goes through Zendesk's proxy, which replaces {{setting.bridge_api_key}} with the
 * stored value, and only for the domains in the manifest's domainWhitelist. The bridge's URL is a
 * plain setting the app reads. One place for the endpoint, the wait, the bodies and the reading of
 * the bridge's answers (snake_case keys; keys the bridge adds later are ignored).
 */
import { LABELS, format } from './labels.js';

// The bridge waits up to this long for CCAI's answer before saying "still pending" (202).
export const SEND_WAIT_SECONDS = 8;
// The proxy's request timeout: the bridge's wait plus the round trip.
export const TIMEOUT_MS = 10000;
export const API_KEY_PLACEHOLDER = '{{setting.bridge_api_key}}';

/** No usable answer: the proxy could not reach the bridge, or the answer was not the bridge's. */
export class BridgeError extends Error {}

/**
 * What a send's status means for the person waiting: sent, notSent (nothing reached the
 * customer), unknown (the answer was lost: most likely delivered), scheduled (held for the send
 * window) or pending (still being sent).
 */
export function outcomeOf(status) {
    switch (status) {
        case 'sent':
        case 'unknown':
        case 'scheduled':
            return status;
        case 'queued':
        case 'sending':
            return 'pending';
        default:
            // failed, skipped, opted_out, suppressed, and a refusal before anything was stored.
            return 'notSent';
    }
}

/** A sentence for an answer the agent cannot use, saying what to do about it where we know. */
export function refusal(status, body) {
    const error = body && body.error ? String(body.error) : `HTTP ${status}`;
    switch (status) {
        case 401:
            return LABELS.badKey;
        case 409:
            // The same key with another body: the first request (whose answer was lost) may have sent.
            return LABELS.reused;
        case 503:
            return format(LABELS.busy, error);
        default:
            return format(LABELS.refused, status, error);
    }
}

function templatesOf(body) {
    const listed = Array.isArray(body.templates) ? body.templates : [];
    return listed
        .map((entry) => (typeof entry === 'string' ? { name: entry, label: entry } : entry))
        .filter((entry) => entry && entry.name)
        .map((entry) => ({ name: String(entry.name), label: String(entry.label || entry.name) }));
}

export function toPreview(body) {
    const segments = body.segments || null;
    const window = body.send_window || null;
    return {
        ticketId: body.ticket_id,
        endUserNumber: body.end_user_number || null,
        message: body.message || '',
        maxSegments: segments && segments.max_segments ? segments.max_segments : null,
        canSend: body.can_send === true,
        blocked: body.blocked ? { status: body.blocked.status, reason: body.blocked.reason } : null,
        sendWindow: window
            ? {
                  isOpen: window.open === true,
                  window: window.window,
                  timeZone: window.time_zone,
                  localTime: window.local_time,
                  opensAt: window.opens_at,
                  reason: window.reason
              }
            : null,
        // Named templates, when this bridge offers them (otherwise the picker stays hidden).
        templates: templatesOf(body),
        template: body.template ? String(body.template) : null
    };
}

export function toSendResult(body) {
    return {
        sendId: body.id === undefined ? null : body.id,
        status: body.status,
        outcome: outcomeOf(body.status),
        chatId: body.chat_id || null,
        error: body.error || null,
        scheduledFor: body.scheduled_for || null
    };
}

function parsed(answer) {
    // The framework gives responseJSON for JSON answers; otherwise only the text, if that.
    if (answer && answer.responseJSON && typeof answer.responseJSON === 'object') {
        return answer.responseJSON;
    }
    try {
        const body = JSON.parse(answer && answer.responseText);
        return body && typeof body === 'object' && !Array.isArray(body) ? body : null;
    } catch {
        return null;
    }
}

export class Bridge {
    /** `client` is the ZAF client; `baseUrl` the bridge's URL (https, no trailing slash). */
    constructor(client, baseUrl) {
        if (!baseUrl) {
            throw new BridgeError(LABELS.noSettings);
        }
        this.client = client;
        this.baseUrl = String(baseUrl).replace(/\/+$/, '');
    }

    /** POST /previews: what a send for the ticket would do now (with a named template, if picked). */
    async preview(ticketId, template) {
        const body = { ticket_id: String(ticketId) };
        if (template) {
            body.template = template;
        }
        const answer = await this.call('POST', '/previews', body);
        if (answer.status !== 200) {
            throw new BridgeError(refusal(answer.status, answer.body));
        }
        return toPreview(answer.body);
    }

    /**
     * POST /sends?wait=8. The same idempotency key with the same body returns the same send (a
     * double click, a retried request) instead of texting the customer again.
     */
    async send({ ticketId, message, idempotencyKey, ignoreSendWindow, agentEmail, template }) {
        const body = { ticket_id: String(ticketId) };
        if (agentEmail) {
            // The person who asked gets the chat: agents use the same email in CCAI Platform.
            body.agent_email = agentEmail;
        }
        if (message) {
            body.message = message;
        }
        if (template) {
            body.template = template;
        }
        if (ignoreSendWindow) {
            body.send_window = 'ignore';
        }
        const answer = await this.call('POST', `/sends?wait=${SEND_WAIT_SECONDS}`, body, idempotencyKey);
        // 200 sent, 202 pending or scheduled, 422 not sent: all are outcomes the agent should see.
        if (![200, 202, 422].includes(answer.status)) {
            throw new BridgeError(refusal(answer.status, answer.body));
        }
        return toSendResult(answer.body);
    }

    /** GET /sends/{id}: a send as it is now. */
    async getSend(sendId) {
        const answer = await this.call('GET', `/sends/${encodeURIComponent(sendId)}`);
        if (answer.status !== 200) {
            throw new BridgeError(refusal(answer.status, answer.body));
        }
        return toSendResult(answer.body);
    }

    async call(method, path, body, idempotencyKey) {
        const headers = { Authorization: `Bearer ${API_KEY_PLACEHOLDER}`, Accept: 'application/json' };
        if (idempotencyKey) {
            headers['Idempotency-Key'] = idempotencyKey;
        }
        const options = {
            url: `${this.baseUrl}/api/v1${path}`,
            type: method,
            headers,
            secure: true,
            cors: false,
            timeout: TIMEOUT_MS,
            httpCompleteResponse: true
        };
        if (body !== undefined) {
            options.contentType = 'application/json';
            options.data = JSON.stringify(body);
        }
        let answer;
        try {
            answer = await this.client.request(options);
        } catch (failure) {
            // The framework rejects non-2xx answers; they still carry the bridge's status and body.
            answer = failure;
        }
        const status = answer && typeof answer.status === 'number' ? answer.status : 0;
        const json = parsed(answer);
        if (json === null) {
            throw new BridgeError(status === 0 ? format(LABELS.unreachable, status) : format(LABELS.notBridge, status));
        }
        return { status, body: json };
    }
}
