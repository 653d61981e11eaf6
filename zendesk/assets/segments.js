/*
 * SMS segments, counted the way the networks (and the bridge's bridge/segments.py) count them.
 * The same port as the Salesforce action's (salesforce/.../lwc/ccaiSmsSegments): a Zendesk app
 * ships its own assets, so it carries its own copy, held to the same shared vectors.
 *
 * A text goes out in the GSM 03.38 default alphabet (7-bit septets) when every character is in its
 * basic table or its extension table, and in UCS-2 (UTF-16 code units) otherwise: one curly
 * apostrophe turns a 160-character message into three parts. A message that fits one part is sent
 * whole (160 septets or 70 units); a longer one is split into parts of 153 septets or 67 units, the
 * rest going to the concatenation header. A part never ends inside an extension character's escape
 * pair or inside a surrogate pair, so parts are filled one character at a time rather than by
 * dividing the total.
 *
 * The tables follow 3GPP TS 23.038, which has the capital Ç at 0x09 (the small ç is UCS-2). The
 * shared vectors in tests/fixtures/sms_segments.json check this port against the Python one.
 */

// Section 6.2.1, the default alphabet in code order 0x00-0x7F, without 0x1B (the escape itself).
const GSM_BASIC = new Set(
    '@£$¥èéùìòÇ\nØø\rÅå' +
        'Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ' +
        ' !"#¤%&\'()*+,-./' +
        '0123456789:;<=>?' +
        '¡ABCDEFGHIJKLMNO' +
        'PQRSTUVWXYZÄÖÑÜ§' +
        '¿abcdefghijklmno' +
        'pqrstuvwxyzäöñüà'
);
// Section 6.2.1.1, the extension table: each is sent as ESC plus a code, two septets.
const GSM_EXTENSION = new Set('\f^{}\\[~]|€');

export const GSM_7 = 'GSM-7';
export const UCS_2 = 'UCS-2';
const SINGLE = { [GSM_7]: 160, [UCS_2]: 70 };
const PART = { [GSM_7]: 153, [UCS_2]: 67 };

function isGsm(character) {
    return GSM_BASIC.has(character) || GSM_EXTENSION.has(character);
}

function pack(sizes, part) {
    // A character that does not fit whole in the current part starts the next one.
    let parts = 1;
    let used = 0;
    for (const size of sizes) {
        if (used + size > part) {
            parts += 1;
            used = 0;
        }
        used += size;
    }
    return parts;
}

/**
 * How `text` would be sent: { encoding, characters, units, segments }. `characters` is what a person
 * counts (code points), `units` what the network counts (septets for GSM-7, UTF-16 code units for
 * UCS-2), `segments` the number of SMS parts (0 for no text).
 */
export function countSegments(text) {
    // Iterating a string yields code points, so an emoji is one character of two UTF-16 units.
    const characters = Array.from(text || '');
    const encoding = characters.every(isGsm) ? GSM_7 : UCS_2;
    const sizes = characters.map((character) => {
        if (encoding === GSM_7) {
            return GSM_EXTENSION.has(character) ? 2 : 1;
        }
        return character.codePointAt(0) > 0xffff ? 2 : 1;
    });
    const units = sizes.reduce((total, size) => total + size, 0);
    let segments;
    if (units === 0) {
        segments = 0;
    } else if (units <= SINGLE[encoding]) {
        segments = 1;
    } else {
        segments = pack(sizes, PART[encoding]);
    }
    return { encoding, characters: characters.length, units, segments };
}
