/**
 * Presets: provider names that are known without code, as data. A configured provider
 * with one of these names gets the preset's API, base URL and key style unless the config
 * says otherwise (app/config/compile.ts); a preset is only served when it is named under
 * `providers:` (no vendor is reached by a config that does not ask for it).
 *
 * `baseUrl` is the vendor's documented OpenAI-compatible base URL without its final
 * `/v1`, so a client keeps `/v1/...` in its path as it does on /openai_passthrough (the
 * SDK's base URL is `<gateway>/<name>_passthrough/v1`), and the vendor's other paths
 * under the same root stay reachable (Ollama's own `/api/...`). Where each value comes
 * from is in README ("Presets").
 */

export interface Preset {
  /** The implementation it speaks (providers/index.ts). */
  readonly api: string;
  /** Where it is when network_config.base_url does not say; undefined: the config must say. */
  readonly baseUrl: string | undefined;
  /** The variable the built-in default config reads a key from (no config file). */
  readonly env?: string;
  /** A local server: without keys and with direct keys off, requests go with no credential instead of a 401. */
  readonly keyOptional?: boolean;
  /** A base URL to show in the message when one is required. */
  readonly example?: string;
}

export const PRESETS: Readonly<Record<string, Preset>> = {
  groq: { api: 'openai', baseUrl: 'https://api.groq.com/openai', env: 'GROQ_API_KEY' },
  mistral: { api: 'openai', baseUrl: 'https://api.mistral.ai', env: 'MISTRAL_API_KEY' },
  deepseek: { api: 'openai', baseUrl: 'https://api.deepseek.com', env: 'DEEPSEEK_API_KEY' },
  xai: { api: 'openai', baseUrl: 'https://api.x.ai', env: 'XAI_API_KEY' },
  openrouter: { api: 'openai', baseUrl: 'https://openrouter.ai/api', env: 'OPENROUTER_API_KEY' },
  together: { api: 'openai', baseUrl: 'https://api.together.ai', env: 'TOGETHER_API_KEY' },
  fireworks: { api: 'openai', baseUrl: 'https://api.fireworks.ai/inference', env: 'FIREWORKS_API_KEY' },
  cerebras: { api: 'openai', baseUrl: 'https://api.cerebras.ai', env: 'CEREBRAS_API_KEY' },
  // Perplexity documents no /v1 for Chat Completions (`/chat/completions` at the root).
  perplexity: { api: 'openai', baseUrl: 'https://api.perplexity.ai', env: 'PERPLEXITY_API_KEY' },
  // Local servers: no key needed (keys configured for one are sent as usual).
  ollama: { api: 'openai', baseUrl: 'http://127.0.0.1:11434', keyOptional: true },
  vllm: { api: 'openai', baseUrl: undefined, keyOptional: true, example: 'http://127.0.0.1:8000' },
  lmstudio: { api: 'openai', baseUrl: undefined, keyOptional: true, example: 'http://127.0.0.1:1234' },
};
