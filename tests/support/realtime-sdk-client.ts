/**
 * The `openai` SDK's OpenAIRealtimeWebSocket as a real client, run as a child process by
 * tests/realtime.test.ts: the SDK opens realtime sockets on wss: URLs only, so it talks to
 * the gateway's TLS listener, trusting the run-time certificate through
 * NODE_EXTRA_CA_CERTS (read by Bun at start, hence a process of its own).
 *
 * env: GW_URL (https://...), MODE (openai | azure), API_KEY, MODEL (OpenAI model or Azure
 * deployment). Prints one JSON line: the subprotocol selected, the messages it sent (as
 * the SDK serialised them), every raw message it received, the events the SDK parsed,
 * and the close it saw.
 */
import { AzureOpenAI, OpenAI } from 'openai';
import { OpenAIRealtimeWebSocket } from 'openai/realtime/websocket';

const { GW_URL, MODE, API_KEY, MODEL } = process.env as Record<'GW_URL' | 'MODE' | 'API_KEY' | 'MODEL', string>;

const rt =
  MODE === 'azure'
    ? await OpenAIRealtimeWebSocket.azure(
        new AzureOpenAI({ endpoint: `${GW_URL}/azure_passthrough`, apiKey: API_KEY, apiVersion: '2025-04-01-preview' }),
        { deploymentName: MODEL },
      )
    : new OpenAIRealtimeWebSocket(
        { model: MODEL },
        new OpenAI({ baseURL: `${GW_URL}/openai_passthrough/v1`, apiKey: API_KEY }),
      );

const raw: string[] = [];
const types: string[] = [];
const sent: string[] = [];
const errors: string[] = [];
rt.socket.addEventListener('message', (e) => raw.push(String(e.data)));
rt.on('event', (event) => types.push(event.type));
rt.on('error', (err) => errors.push(err.message));
const closed = new Promise<{ code: number; reason: string }>((resolve) =>
  rt.socket.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason })),
);

const until = (type: string) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} within 5 s (errors: ${errors.join('; ')})`)), 5000);
    rt.on('event', (event) => {
      if (event.type === type) {
        clearTimeout(timer);
        resolve();
      }
    });
  });

await until('session.created');
const events = [
  { type: 'session.update', session: { type: 'realtime', instructions: 'Réponds brièvement ✓' } },
  {
    type: 'conversation.item.create',
    item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hello' }] },
  },
  { type: 'response.create' },
] as const;
const done = until('response.done');
for (const event of events) {
  sent.push(JSON.stringify(event));
  rt.send(event as never);
}
await done;
rt.close({ code: 1000, reason: 'client done' });
const close = await closed;
process.stdout.write(`${JSON.stringify({ protocol: rt.socket.protocol, sent, raw, types, errors, close })}\n`);
process.exit(0);
