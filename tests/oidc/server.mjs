// Test-only OAuth 2.0 / OpenID Connect authorization server for the
// usersession test suite, built on the `oidc-provider` package.
//
// Usage: node server.mjs [PORT]   (PORT 0, the default, picks a free port)
//
// It listens on 127.0.0.1 only and prints exactly one line to stdout,
// `READY http://127.0.0.1:<port>`, once it accepts connections. Everything
// else (including oidc-provider's own notices) goes to stderr. No secret or
// token is ever written out.
//
// Environment:
//   OIDC_PORT               port when no argument is given (default 0)
//   OIDC_CLIENT_ID          confidential client id (default "usersession-test")
//   OIDC_CLIENT_SECRET      its secret (default: a fixed test value)
//   OIDC_ACCESS_TOKEN_TTL   access token lifetime in seconds (default 4)
//   OIDC_REFRESH_TOKEN_TTL  refresh token lifetime in seconds (default 86400)
//   OIDC_ACCOUNT_ID         the `sub` every login yields (default "test-user")
//   OIDC_EXIT_ON_STDIN_EOF  "1": exit when stdin closes (parent went away)
//
// A second confidential client, `usersession-other` (secret
// `usersession-other-secret-not-for-production`, client_secret_basic), has
// the client_credentials grant only: it issues "tokens of another client".
// Only the first client may introspect (see features.introspection).
//
// Test-only routes (not part of any standard):
//   GET  /interaction/:uid    logs the fixed account in and grants what the
//                             pending authorization request asked for, then
//                             sends the user agent back to the provider
//   GET  /test/stats          counters, see `newStats` below
//   POST /test/stats/reset    zeroes the counters (204)
//   POST /test/drop-access-token  body `token=AT`: forget that one access
//                             token, leaving its grant and refresh token
//                             alone (RFC 7009 revocation of an access token
//                             revokes the whole grant in oidc-provider) (204;
//                             404 when unknown)
//   POST /test/token-delay    body/query `ms=N`: hold each token request N ms
//                             before it is processed (0 turns it off) (204)
//   POST /test/device-interval  body `seconds=N`: add `interval: N` to device
//                             authorization answers (oidc-provider leaves it
//                             out, so clients poll every 5 s; `seconds=` with
//                             no value restores that) (204)
//
// The device flow (RFC 8628) is on: POST /device/auth issues codes, and the
// verification pages under /device take the user code, then a confirmation,
// then the same interaction route as an authorization request.

import { Buffer } from 'node:buffer';
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import process from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';

// Keep stdout for the READY line alone: oidc-provider prints notices through
// console.info, so every console method is pointed at stderr before the
// package is loaded.
{
  const toStderr = (...args) => {
    process.stderr.write(`${args.map(String).join(' ')}\n`);
  };
  for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
    console[method] = toStderr;
  }
}

function intFromEnv(name, fallback, { min = 0 } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${name} must be an integer >= ${min}`);
  }
  return value;
}

const port = process.argv[2] !== undefined
  ? Number(process.argv[2])
  : intFromEnv('OIDC_PORT', 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new Error('port must be an integer between 0 and 65535');
}

const CLIENT_ID = process.env.OIDC_CLIENT_ID || 'usersession-test';
const CLIENT_SECRET = process.env.OIDC_CLIENT_SECRET
  || 'usersession-test-secret-not-for-production';
const ACCESS_TOKEN_TTL = intFromEnv('OIDC_ACCESS_TOKEN_TTL', 4, { min: 1 });
const REFRESH_TOKEN_TTL = intFromEnv('OIDC_REFRESH_TOKEN_TTL', 24 * 60 * 60, { min: 1 });
const ACCOUNT_ID = process.env.OIDC_ACCOUNT_ID || 'test-user';
const OTHER_CLIENT_ID = 'usersession-other';
const OTHER_CLIENT_SECRET = 'usersession-other-secret-not-for-production';
const HOST = '127.0.0.1';

// Start the RSA key generation and the package import side by side: both
// take a noticeable part of the start-up time.
const signingKeyPromise = new Promise((resolve, reject) => {
  crypto.generateKeyPair('rsa', { modulusLength: 2048 }, (err, _publicKey, privateKey) => {
    if (err) reject(err);
    else resolve(privateKey);
  });
});
const { default: Provider } = await import('oidc-provider');

// ---------------------------------------------------------------------------
// Storage: one Map per provider, nothing is ever evicted for size or age.
// oidc-provider checks `exp` itself on every lookup, so expired records are
// simply never returned as valid; keeping them costs a few KB per test run.
// Records are copied on the way in and out, as a real store would.

const GRANT_BOUND_MODELS = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

function createStore() {
  const records = new Map(); // `${model}:${id}` -> payload
  const byGrant = new Map(); // grantId -> Set of record keys
  const byUid = new Map(); // session uid -> session id
  const byUserCode = new Map(); // device user code -> device code id

  return class KeepEverythingAdapter {
    constructor(model) {
      this.model = model;
    }

    key(id) {
      return `${this.model}:${id}`;
    }

    async upsert(id, payload, _expiresIn) {
      const key = this.key(id);
      records.set(key, structuredClone(payload));
      if (this.model === 'Session' && payload.uid) {
        byUid.set(payload.uid, id);
      }
      if (payload.userCode) {
        byUserCode.set(payload.userCode, id);
      }
      if (payload.grantId && GRANT_BOUND_MODELS.has(this.model)) {
        let members = byGrant.get(payload.grantId);
        if (!members) {
          members = new Set();
          byGrant.set(payload.grantId, members);
        }
        members.add(key);
      }
    }

    async find(id) {
      const payload = records.get(this.key(id));
      return payload === undefined ? undefined : structuredClone(payload);
    }

    async findByUid(uid) {
      const id = byUid.get(uid);
      return id === undefined ? undefined : this.find(id);
    }

    async findByUserCode(userCode) {
      const id = byUserCode.get(userCode);
      return id === undefined ? undefined : this.find(id);
    }

    async consume(id) {
      const payload = records.get(this.key(id));
      if (payload) {
        payload.consumed = Math.floor(Date.now() / 1000);
      }
    }

    async destroy(id) {
      const key = this.key(id);
      const payload = records.get(key);
      records.delete(key);
      if (!payload) return;
      if (payload.uid && byUid.get(payload.uid) === id) byUid.delete(payload.uid);
      if (payload.userCode && byUserCode.get(payload.userCode) === id) {
        byUserCode.delete(payload.userCode);
      }
      if (payload.grantId) byGrant.get(payload.grantId)?.delete(key);
    }

    async revokeByGrantId(grantId) {
      const members = byGrant.get(grantId);
      byGrant.delete(grantId);
      if (!members) return;
      for (const key of members) {
        records.delete(key);
      }
    }
  };
}

// ---------------------------------------------------------------------------
// Counters, updated from the provider's events.

function newStats() {
  return {
    // successful token responses, by grant_type
    grants: { authorization_code: 0, refresh_token: 0, client_credentials: 0 },
    // failed token requests, by grant_type, then by OAuth error code
    grant_errors: {},
    // failed token requests answered `invalid_grant`, all grant types
    invalid_grant: 0,
    // refresh_token requests answered `invalid_grant`
    refresh_token_invalid_grant: 0,
    // token requests answered (success or error), by grant_type
    token_requests: {},
    // highest number of token requests in progress at the same moment
    max_concurrent_token_requests: 0,
    introspections: 0,
    revocations: 0,
    // access tokens removed through /test/drop-access-token
    access_tokens_dropped: 0,
    authorizations: 0,
    interactions_completed: 0,
    server_errors: 0,
  };
}

let stats = newStats();
let inFlightTokenRequests = 0;
let tokenDelayMs = 0;
let deviceIntervalSeconds = null;

function devicePage(title, body) {
  return `<!DOCTYPE html><html><head><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;
}

function bump(table, key) {
  table[key] = (table[key] ?? 0) + 1;
}

// ---------------------------------------------------------------------------
// Accounts: a single fixed user.

async function findAccount(_ctx, sub) {
  if (sub !== ACCOUNT_ID) return undefined;
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        name: 'Test User',
        email: `${sub}@example.test`,
        email_verified: true,
      };
    },
  };
}

// ---------------------------------------------------------------------------
// The server: bind first, so the issuer can carry the real port.

const server = http.createServer();
server.keepAliveTimeout = 5_000;

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, HOST, () => {
    server.off('error', reject);
    resolve();
  });
});

const issuer = `http://${HOST}:${server.address().port}`;
const signingKey = await signingKeyPromise;

const provider = new Provider(issuer, {
  adapter: createStore(),
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      client_name: 'usersession test client',
      // "native" lets the loopback redirect URIs below match on any port
      // (RFC 8252, section 7.3); the client still authenticates with its
      // secret.
      application_type: 'native',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [
        'authorization_code',
        'refresh_token',
        'client_credentials',
        'urn:ietf:params:oauth:grant-type:device_code',
      ],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback', 'http://[::1]/callback'],
    },
    {
      client_id: OTHER_CLIENT_ID,
      client_secret: OTHER_CLIENT_SECRET,
      client_name: 'usersession other test client',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks: { keys: [{ ...signingKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' }] },
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
  },
  clockTolerance: 0,
  responseTypes: ['code'],
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: {
    openid: ['sub'],
    profile: ['name'],
    email: ['email', 'email_verified'],
  },
  findAccount,
  pkce: {
    required: () => true,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy: async (_ctx, client) => client.clientId === CLIENT_ID,
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
    },
    userinfo: { enabled: true },
    deviceFlow: {
      enabled: true,
      // Plain pages: the test helper reads the forms, which oidc-provider
      // builds (with their xsrf fields), from them.
      userCodeInputSource: async (ctx, form, _out, err) => {
        ctx.body = devicePage('Enter code', err ? `<p>error: ${err.name}</p>${form}` : form);
      },
      userCodeConfirmSource: async (ctx, form, _client, _deviceInfo, userCode) => {
        ctx.body = devicePage('Confirm code', `<p>${userCode}</p>${form}`);
      },
      successSource: async (ctx) => {
        ctx.body = devicePage('Signed in', '<p>You can return to your device.</p>');
      },
    },
  },
  // Refresh tokens for every authorization code, without offline_access or
  // prompt=consent, and a fresh one on every refresh_token grant. Presenting
  // a rotated (consumed) refresh token again is answered invalid_grant and
  // revokes the whole grant, as oidc-provider does for reuse.
  issueRefreshToken: async () => true,
  rotateRefreshToken: () => true,
  // Tokens do not die with the browser session the test client left behind.
  expiresWithSession: async () => false,
  interactions: {
    url: async (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  clientBasedCORS: () => false,
  ttl: {
    AccessToken: () => ACCESS_TOKEN_TTL,
    ClientCredentials: () => ACCESS_TOKEN_TTL,
    AuthorizationCode: () => 60,
    DeviceCode: () => 10 * 60,
    IdToken: () => 60 * 60,
    RefreshToken: () => REFRESH_TOKEN_TTL,
    Interaction: () => 10 * 60,
    Session: () => 24 * 60 * 60,
    Grant: () => 24 * 60 * 60,
  },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});

provider.on('grant.success', (ctx) => {
  bump(stats.grants, String(ctx.oidc.params?.grant_type));
});
provider.on('grant.error', (ctx, err) => {
  const grantType = String(ctx.oidc?.params?.grant_type);
  const code = String(err?.error ?? 'unknown');
  stats.grant_errors[grantType] ??= {};
  bump(stats.grant_errors[grantType], code);
  if (code === 'invalid_grant') {
    stats.invalid_grant += 1;
    if (grantType === 'refresh_token') stats.refresh_token_invalid_grant += 1;
  }
});
provider.on('authorization.success', () => {
  stats.authorizations += 1;
});
provider.on('server_error', (_ctx, err) => {
  stats.server_errors += 1;
  // The message only: stacks and contexts may carry request data.
  console.error(`oidc test server: server_error: ${err?.message ?? err}`);
});

// ---------------------------------------------------------------------------
// Test-only routes, placed before oidc-provider's own.

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function json(ctx, status, body) {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = JSON.stringify(body);
}

async function completeInteraction(ctx) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { params, prompt, session } = details;
  if (params.client_id !== CLIENT_ID) {
    json(ctx, 400, { error: 'unknown client' });
    return;
  }
  const accountId = session?.accountId ?? ACCOUNT_ID;

  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(String(params.scope));
  if (prompt.details.missingOIDCClaims) {
    grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  }
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();

  const returnTo = await provider.interactionResult(
    ctx.req,
    ctx.res,
    {
      login: { accountId, amr: ['pwd'], acr: 'urn:usersession:test' },
      consent: { grantId },
    },
    { mergeWithLastSubmission: false },
  );
  stats.interactions_completed += 1;
  ctx.status = 303;
  ctx.set('Cache-Control', 'no-store');
  ctx.redirect(returnTo);
}

const TOKEN_PATH = new URL(provider.urlFor('token')).pathname;
const INTROSPECTION_PATH = new URL(provider.urlFor('introspection')).pathname;
const REVOCATION_PATH = new URL(provider.urlFor('revocation')).pathname;
const DEVICE_AUTHORIZATION_PATH = new URL(provider.urlFor('device_authorization')).pathname;

provider.use(async (ctx, next) => {
  const { method, path } = ctx;

  if (path === '/test/stats' && method === 'GET') {
    json(ctx, 200, stats);
    return;
  }
  if (path === '/test/stats/reset' && method === 'POST') {
    stats = newStats();
    ctx.status = 204;
    return;
  }
  if (path === '/test/token-delay' && method === 'POST') {
    const form = await readForm(ctx.req);
    const ms = Number(form.get('ms') ?? ctx.query.ms ?? 0);
    if (!Number.isInteger(ms) || ms < 0 || ms > 60_000) {
      json(ctx, 400, { error: 'ms must be an integer between 0 and 60000' });
      return;
    }
    tokenDelayMs = ms;
    ctx.status = 204;
    return;
  }
  if (path === '/test/device-interval' && method === 'POST') {
    const form = await readForm(ctx.req);
    const raw = form.get('seconds') ?? '';
    const seconds = Number(raw);
    if (raw !== '' && (!Number.isInteger(seconds) || seconds < 0 || seconds > 600)) {
      json(ctx, 400, { error: 'seconds must be an integer between 0 and 600, or empty' });
      return;
    }
    deviceIntervalSeconds = raw === '' ? null : seconds;
    ctx.status = 204;
    return;
  }
  if (method === 'POST' && path === DEVICE_AUTHORIZATION_PATH) {
    await next();
    if (deviceIntervalSeconds !== null && ctx.status === 200 && ctx.body) {
      ctx.body = { ...ctx.body, interval: deviceIntervalSeconds };
    }
    return;
  }
  if (path === '/test/drop-access-token' && method === 'POST') {
    const form = await readForm(ctx.req);
    const token = await provider.AccessToken.find(
      String(form.get('token') ?? ''),
      { ignoreExpiration: true },
    );
    if (!token) {
      json(ctx, 404, { error: 'unknown access token' });
      return;
    }
    await token.destroy();
    stats.access_tokens_dropped += 1;
    ctx.status = 204;
    return;
  }
  if (method === 'GET' && /^\/interaction\/[^/]+$/.test(path)) {
    try {
      await completeInteraction(ctx);
    } catch (err) {
      json(ctx, 400, { error: 'interaction_failed', error_description: String(err?.message ?? err) });
    }
    return;
  }

  if (method === 'POST' && path === TOKEN_PATH) {
    // The body (and so grant_type) is parsed further down: track overlap
    // now, count the request by grant_type once it has been answered.
    inFlightTokenRequests += 1;
    stats.max_concurrent_token_requests = Math.max(
      stats.max_concurrent_token_requests,
      inFlightTokenRequests,
    );
    try {
      if (tokenDelayMs > 0) await sleep(tokenDelayMs);
      await next();
    } finally {
      inFlightTokenRequests -= 1;
      bump(stats.token_requests, String(ctx.oidc?.params?.grant_type));
    }
    return;
  }
  if (method === 'POST' && path === INTROSPECTION_PATH) {
    await next();
    if (ctx.status === 200) stats.introspections += 1;
    return;
  }
  if (method === 'POST' && path === REVOCATION_PATH) {
    await next();
    if (ctx.status === 200) stats.revocations += 1;
    return;
  }
  await next();
});

server.on('request', provider.callback());

// ---------------------------------------------------------------------------
// Lifecycle.

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2_000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (process.env.OIDC_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

process.stdout.write(`READY ${issuer}\n`);
