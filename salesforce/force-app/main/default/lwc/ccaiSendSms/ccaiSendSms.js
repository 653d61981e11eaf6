/*
 * "Send SMS" on a Case: shows the number the bridge would text (masked) and why it cannot when it
 * cannot, lets the agent pick one of the bridge's message templates (GET /api/v1/templates) and see
 * it rendered for this Case (POST /api/v1/previews with the template), edit it with a live preview
 * and SMS-segment counter, sends it through the bridge (Apex BridgeSmsController,
 * callout:CCAI_Bridge) and shows the outcome as it arrives.
 *
 * A double click texts once: every request for one composed message carries the same
 * Idempotency-Key, and the bridge answers a repeated key with the send it already has. The key is
 * replaced only once an outcome has arrived; a failed request (timeout, network) keeps it, so that
 * trying again cannot send a second SMS if the first one did reach the bridge.
 */
import { LightningElement, api } from 'lwc';
import { CloseActionScreenEvent } from 'lightning/actions';
import { notifyRecordUpdateAvailable } from 'lightning/uiRecordApi';
import previewSend from '@salesforce/apex/BridgeSmsController.preview';
import sendSms from '@salesforce/apex/BridgeSmsController.send';
import getSend from '@salesforce/apex/BridgeSmsController.getSend';
import listTemplates from '@salesforce/apex/BridgeSmsController.templates';
import { countSegments, UCS_2 } from 'c/ccaiSmsSegments';
import { LABELS, format } from './labels';

// After the bridge's own 8-second wait, a send still under way is read again after 1, 2 and 4
// seconds; past that the agent is told the outcome will appear on the Case.
export const POLL_DELAYS_MS = [1000, 2000, 4000];
// The bridge's default [message] max_segments, for a preview that has no message to count.
const DEFAULT_MAX_SEGMENTS = 10;

function newIdempotencyKey(recordId) {
    // Lightning Web Security exposes crypto.randomUUID in current browsers; the fallback keeps the
    // key unique enough for one agent's clicks where it does not.
    const random =
        typeof crypto !== 'undefined' && crypto.randomUUID
            ? crypto.randomUUID()
            : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    return `sfdc-${recordId}-${random}`;
}

function errorText(error) {
    // Apex errors arrive as { body: { message } }; network and client errors as Error objects.
    const body = error && error.body;
    if (body && body.message) {
        return body.message;
    }
    if (body && Array.isArray(body.pageErrors) && body.pageErrors.length) {
        return body.pageErrors[0].message;
    }
    return (error && error.message) || LABELS.unknownError;
}

function pause(milliseconds) {
    return new Promise((resolve) => {
        // eslint-disable-next-line @lwc/lwc/no-async-operation -- polling needs a real pause between reads
        setTimeout(resolve, milliseconds);
    });
}

export default class CcaiSendSms extends LightningElement {
    labels = LABELS;

    loading = false;
    loadError;
    preview;
    message = '';
    ignoreWindow = false;

    // The bridge's templates ({ name, label, description, isDefault }); empty when it lists none.
    templates = [];
    // The template the agent chose, and the one whose text the message was filled from.
    template;
    previewedTemplate;
    previewing = false;
    templateError;
    _previewSequence = 0;

    sending = false;
    polling = false;
    sendError;
    result;
    idempotencyKey;

    _recordId;
    _connected = false;

    // A setter rather than connectedCallback: a screen action receives recordId after it is created.
    @api
    get recordId() {
        return this._recordId;
    }
    set recordId(value) {
        const changed = value !== this._recordId;
        this._recordId = value;
        if (value && changed) {
            this.load();
        }
    }

    connectedCallback() {
        this._connected = true;
    }

    disconnectedCallback() {
        // Closing the action stops any polling still under way.
        this._connected = false;
    }

    async load() {
        this.loading = true;
        this.loadError = undefined;
        this.result = undefined;
        this.idempotencyKey = newIdempotencyKey(this._recordId);
        this._previewSequence += 1;
        // Both at once: the agent waits for the slower of the two, not their sum.
        const [templates, preview] = await Promise.allSettled([
            listTemplates(),
            previewSend({ caseId: this._recordId, templateName: null })
        ]);
        // A bridge that lists no templates (or an older one) still previews its default message.
        this.templates = templates.status === 'fulfilled' && Array.isArray(templates.value) ? templates.value : [];
        if (preview.status === 'fulfilled') {
            this.showPreview(preview.value);
        } else {
            this.loadError = errorText(preview.reason);
        }
        this.loading = false;
    }

    showPreview(preview) {
        this.preview = preview;
        this.message = preview.message || '';
        this.previewedTemplate = (preview.templateChoice && preview.templateChoice.name) || this.template;
        this.template = this.previewedTemplate;
    }

    // ---- What the template shows -------------------------------------------------------------

    get ready() {
        return !this.loading && !this.loadError && this.preview;
    }

    get composing() {
        return this.ready && !this.result;
    }

    get showTemplatePicker() {
        return this.templates.length > 1;
    }

    get templateOptions() {
        return this.templates.map((template) => ({ label: template.label || template.name, value: template.name }));
    }

    get templateHelp() {
        const chosen = this.templates.find((template) => template.name === this.template);
        return (chosen && chosen.description) || null;
    }

    get templateNote() {
        // Which variant the bridge chose for this customer, when the template has several languages.
        const chosen = this.preview && this.preview.templateChoice;
        return chosen && chosen.language ? format(LABELS.templateLanguage, chosen.language) : null;
    }

    get previewText() {
        return this.message.trim() ? this.message : LABELS.previewEmpty;
    }

    get numberText() {
        return (this.preview && this.preview.endUserNumber) || LABELS.noNumber;
    }

    get blocked() {
        return this.preview && this.preview.blocked;
    }

    get blockedTitle() {
        const titles = LABELS.blockedTitles;
        return titles[this.blocked.status] || titles.default;
    }

    get sendWindow() {
        return this.preview && this.preview.sendWindow;
    }

    get outsideWindow() {
        return Boolean(this.sendWindow && this.sendWindow.isOpen === false);
    }

    get outsideWindowText() {
        const { localTime, timeZone, window: hours } = this.sendWindow;
        return format(LABELS.outsideWindow, localTime, timeZone, hours);
    }

    get count() {
        return countSegments(this.message);
    }

    get maxSegments() {
        const segments = this.preview && this.preview.segments;
        return (segments && segments.maxSegments) || DEFAULT_MAX_SEGMENTS;
    }

    get overLimit() {
        return this.count.segments > this.maxSegments;
    }

    get counterText() {
        const count = this.count;
        if (count.characters === 0) {
            return LABELS.counterEmpty;
        }
        if (this.overLimit) {
            return format(LABELS.overLimit, count.segments, this.maxSegments);
        }
        return format(LABELS.counter, count.characters, count.encoding, count.segments, this.maxSegments);
    }

    get counterClass() {
        return this.overLimit ? 'slds-form-element__help slds-text-color_error' : 'slds-form-element__help';
    }

    get ucs2Hint() {
        // Name the first character that forces UCS-2: the agent rarely sees why otherwise.
        if (this.count.encoding !== UCS_2) {
            return null;
        }
        const culprit = Array.from(this.message).find((character) => countSegments(character).encoding === UCS_2);
        return culprit ? format(LABELS.ucs2Hint, culprit) : null;
    }

    get sendDisabled() {
        return (
            this.sending ||
            this.previewing ||
            !this.preview ||
            !this.preview.canSend ||
            this.overLimit ||
            !this.message.trim()
        );
    }

    get sendLabel() {
        return this.outsideWindow && !this.ignoreWindow ? LABELS.schedule : LABELS.send;
    }

    get busyText() {
        return this.polling ? LABELS.checkingOutcome : LABELS.sending;
    }

    get busy() {
        return this.sending || this.polling || this.previewing;
    }

    get outcome() {
        return this.result && this.result.outcome;
    }

    get isSent() {
        return this.outcome === 'sent';
    }

    get isNotSent() {
        return this.outcome === 'notSent';
    }

    get isUnknown() {
        return this.outcome === 'unknown';
    }

    get isScheduled() {
        return this.outcome === 'scheduled';
    }

    get sentText() {
        return format(LABELS.sent, this.result.chatId);
    }

    get notSentStatusText() {
        return LABELS.notSentStatuses[this.result.status] || '';
    }

    // ---- What the agent does ----------------------------------------------------------------

    handleMessageChange(event) {
        this.message = event.detail.value || '';
    }

    async handleTemplateChange(event) {
        const name = event.detail.value;
        if (!name || name === this.template) {
            return;
        }
        this.template = name;
        this.templateError = undefined;
        this.previewing = true;
        // Only the latest choice may fill the message: an earlier, slower answer is dropped.
        this._previewSequence += 1;
        const sequence = this._previewSequence;
        try {
            const preview = await previewSend({ caseId: this._recordId, templateName: name });
            if (sequence === this._previewSequence) {
                this.showPreview(preview);
            }
        } catch (error) {
            if (sequence === this._previewSequence) {
                // The message still holds the previous template's text: say so and select it again.
                this.templateError = errorText(error);
                this.template = this.previewedTemplate;
            }
        } finally {
            if (sequence === this._previewSequence) {
                this.previewing = false;
            }
        }
    }

    handleIgnoreWindowChange(event) {
        this.ignoreWindow = event.detail.checked;
    }

    async handleSend() {
        // sendDisabled covers a second click that lands before the button re-renders as disabled.
        if (this.sendDisabled) {
            return;
        }
        this.sending = true;
        this.sendError = undefined;
        let result;
        try {
            result = await sendSms({
                caseId: this._recordId,
                message: this.message,
                templateName: this.template || null,
                idempotencyKey: this.idempotencyKey,
                ignoreSendWindow: this.ignoreWindow
            });
        } catch (error) {
            // Not an outcome: keep the key, so that trying again returns this send if it got through.
            this.sendError = errorText(error);
            return;
        } finally {
            this.sending = false;
        }
        this.showOutcome(result);
        if (result.outcome === 'pending' && result.sendId) {
            await this.poll(result.sendId);
        }
    }

    showOutcome(result) {
        this.result = result;
        // The bridge has this send: the next message is a new one.
        this.idempotencyKey = newIdempotencyKey(this._recordId);
    }

    async poll(sendId) {
        this.polling = true;
        try {
            for (const delay of POLL_DELAYS_MS) {
                // eslint-disable-next-line no-await-in-loop -- each read waits for the previous one
                await pause(delay);
                if (!this._connected) {
                    return;
                }
                try {
                    // eslint-disable-next-line no-await-in-loop
                    const latest = await getSend({ sendId });
                    this.result = latest;
                    if (latest.outcome !== 'pending') {
                        return;
                    }
                } catch {
                    // A failed read says nothing about the send: try again at the next step.
                }
            }
        } finally {
            this.polling = false;
        }
    }

    handleSendAnother() {
        this.result = undefined;
        this.sendError = undefined;
        this.ignoreWindow = false;
    }

    handleClose() {
        if (this.result) {
            // The bridge writes the outcome to the Case: let the record page show it.
            notifyRecordUpdateAvailable([{ recordId: this._recordId }]).catch(() => {});
        }
        this.dispatchEvent(new CloseActionScreenEvent());
    }
}
