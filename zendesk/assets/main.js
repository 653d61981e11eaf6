/*
 * The app's entry point in the ticket sidebar: reads the ticket, the agent and the app's settings
 * from the Zendesk Apps Framework, then draws the sidebar. Secure settings (the bridge's API key)
 * never reach this code: the framework's proxy fills them in (see bridge.js).
 */
import { Bridge } from './bridge.js';
import { LABELS } from './labels.js';
import { Sidebar } from './sidebar.js';

export async function start(client, root) {
    const [data, metadata] = await Promise.all([client.get(['ticket.id', 'currentUser.email']), client.metadata()]);
    const ticketId = data['ticket.id'];
    const settings = (metadata && metadata.settings) || {};
    const resize = () => client.invoke('resize', { width: '100%', height: `${Math.max(root.scrollHeight, 80) + 16}px` });
    let bridge;
    try {
        bridge = new Bridge(client, settings.bridge_url);
    } catch (error) {
        root.textContent = `${LABELS.errorTitle}: ${error.message}`;
        resize();
        return null;
    }
    const sidebar = new Sidebar({ bridge, root, ticketId, agentEmail: data['currentUser.email'], resize });
    // Another ticket in the same tab: start again for it.
    client.on('ticket.id.changed', () => start(client, root));
    await sidebar.load();
    return sidebar;
}

if (typeof window !== 'undefined' && window.ZAFClient && !window.__CCAI_BRIDGE_TEST__) {
    const client = window.ZAFClient.init();
    client.on('app.registered', () => start(client, document.getElementById('app')));
}
