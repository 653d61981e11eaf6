import { jest } from '@jest/globals';

globalThis.__CCAI_BRIDGE_TEST__ = true;
const { start } = await import('../assets/main.js');

function client(settings) {
    return {
        get: jest.fn(async () => ({ 'ticket.id': 1002, 'currentUser.email': 'ana.agent@example.com' })),
        metadata: jest.fn(async () => ({ settings })),
        invoke: jest.fn(),
        on: jest.fn(),
        request: jest.fn(async () => ({ status: 200, responseJSON: { ticket_id: '1002', can_send: true, message: 'Hi' } }))
    };
}

it('reads the ticket and the agent from the framework and previews through the proxy', async () => {
    const zaf = client({ bridge_url: 'https://bridge.acme.example' });
    const root = document.createElement('main');
    const sidebar = await start(zaf, root);

    expect(zaf.get).toHaveBeenCalledWith(['ticket.id', 'currentUser.email']);
    expect(zaf.request.mock.calls[0][0].url).toBe('https://bridge.acme.example/api/v1/previews');
    expect(sidebar.agentEmail).toBe('ana.agent@example.com');
    expect(zaf.invoke).toHaveBeenCalledWith('resize', expect.objectContaining({ width: '100%' }));
    expect(zaf.on).toHaveBeenCalledWith('ticket.id.changed', expect.any(Function));
});

it('without a bridge URL it says what the admin must set', async () => {
    const zaf = client({});
    const root = document.createElement('main');
    expect(await start(zaf, root)).toBeNull();
    expect(root.textContent).toContain('no Bridge URL');
    expect(zaf.request).not.toHaveBeenCalled();
});
