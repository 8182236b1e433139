/**
 * The built-in config used when no file is given: every provider whose standard
 * environment variables are set is enabled with one key; the rest run in direct-key mode
 * (the client's own credential is forwarded).
 */
import type { ConfigInput } from '../../config/schema.ts';
import { PRESETS } from '../../providers/presets.ts';
import type { Env } from './load.ts';

export function defaultConfigInput(env: Env): ConfigInput {
  const providers: NonNullable<ConfigInput['providers']> = {};
  if (env.OPENAI_API_KEY) providers.openai = { keys: [{ name: 'env', value: 'env.OPENAI_API_KEY' }] };
  if (env.ANTHROPIC_API_KEY) providers.anthropic = { keys: [{ name: 'env', value: 'env.ANTHROPIC_API_KEY' }] };
  const geminiVar = env.GEMINI_API_KEY ? 'GEMINI_API_KEY' : env.GOOGLE_API_KEY ? 'GOOGLE_API_KEY' : undefined;
  if (geminiVar) providers.gemini = { keys: [{ name: 'env', value: `env.${geminiVar}` }] };
  if (env.AZURE_API_KEY && env.AZURE_ENDPOINT) {
    providers.azure = {
      keys: [
        {
          name: 'env',
          value: 'env.AZURE_API_KEY',
          azure_key_config: {
            endpoint: env.AZURE_ENDPOINT,
            ...(env.AZURE_API_VERSION ? { api_version: env.AZURE_API_VERSION } : {}),
          },
        },
      ],
    };
  }
  const project = env.VERTEX_PROJECT ?? env.GOOGLE_CLOUD_PROJECT;
  const region = env.VERTEX_REGION ?? env.GOOGLE_CLOUD_LOCATION ?? env.GOOGLE_CLOUD_REGION;
  if (env.GOOGLE_APPLICATION_CREDENTIALS && project && region) {
    providers.vertex = {
      keys: [
        {
          name: 'env',
          vertex_key_config: { project_id: project, region, auth_credentials: env.GOOGLE_APPLICATION_CREDENTIALS },
        },
      ],
    };
  }
  const awsRegion = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  const awsRegionField = awsRegion ? { region: awsRegion } : {};
  if (env.AWS_BEARER_TOKEN_BEDROCK) {
    providers.bedrock = {
      keys: [{ name: 'env', value: 'env.AWS_BEARER_TOKEN_BEDROCK', bedrock_key_config: awsRegionField }],
    };
  } else if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    const token = env.AWS_SESSION_TOKEN ? { session_token: 'env.AWS_SESSION_TOKEN' } : {};
    providers.bedrock = {
      keys: [
        {
          name: 'env',
          bedrock_key_config: {
            access_key: 'env.AWS_ACCESS_KEY_ID',
            secret_key: 'env.AWS_SECRET_ACCESS_KEY',
            ...token,
            ...awsRegionField,
          },
        },
      ],
    };
  }
  for (const [name, preset] of Object.entries(PRESETS))
    if (preset.env && env[preset.env]) providers[name] = { keys: [{ name: 'env', value: `env.${preset.env}` }] };
  return {
    server: {
      ...(env.SKYBRIDGE_HOST ? { host: env.SKYBRIDGE_HOST } : {}),
      ...(env.SKYBRIDGE_PORT ? { port: Number(env.SKYBRIDGE_PORT) } : {}),
    },
    providers,
  };
}
