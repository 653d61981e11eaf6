import fs from 'fs';
import path from 'path';
import { countSegments } from 'c/ccaiSmsSegments';

// The vectors the bridge's Python counter (bridge/segments.py) is tested against too, so that the
// agent's counter and the bridge's limit always agree. Found by walking up to the repository root.
function sharedVectors() {
    let folder = __dirname;
    for (;;) {
        const candidate = path.join(folder, 'tests', 'fixtures', 'sms_segments.json');
        if (fs.existsSync(candidate)) {
            return JSON.parse(fs.readFileSync(candidate, 'utf8'));
        }
        const parent = path.dirname(folder);
        if (parent === folder) {
            throw new Error('tests/fixtures/sms_segments.json was not found above ' + __dirname);
        }
        folder = parent;
    }
}

const VECTORS = sharedVectors();

describe('c-ccai-sms-segments', () => {
    it('has shared vectors to check', () => {
        expect(VECTORS.length).toBeGreaterThan(10);
        expect(VECTORS.some((vector) => vector.encoding === 'UCS-2')).toBe(true);
    });

    it.each(VECTORS.map((vector) => [vector.name || JSON.stringify(vector.text).slice(0, 40), vector]))(
        'counts "%s" as the bridge does',
        (name, vector) => {
            expect(countSegments(vector.text)).toEqual({
                encoding: vector.encoding,
                characters: vector.characters,
                units: vector.units,
                segments: vector.segments
            });
        }
    );

    it('treats a missing text as empty', () => {
        expect(countSegments(undefined)).toEqual({ encoding: 'GSM-7', characters: 0, units: 0, segments: 0 });
    });
});
