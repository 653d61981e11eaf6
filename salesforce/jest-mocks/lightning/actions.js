// What the platform's lightning/actions module does for a screen quick action: an event that asks
// the action's container to close. sfdx-lwc-jest ships no stub for it.
export const CloseScreenEventName = 'lightning__actionsclosescreen';

export class CloseActionScreenEvent extends CustomEvent {
    constructor() {
        super(CloseScreenEventName, { bubbles: false, composed: false });
    }
}
