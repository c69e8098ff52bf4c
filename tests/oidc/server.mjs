// A real OpenID Connect provider (panva/oidc-provider 9) for Atrium's tests.
//
//   OIDC_REDIRECT_URIS=http://127.0.0.1:8123/chat/auth/oauth/oidc/callback node tests/oidc/server.mjs --port 9000
//
// Environment / argv:
//   --port N | OIDC_PORT             port on 127.0.0.1 (0 or unset = any free port; the issuer follows it)
//   --issuer URL | OIDC_ISSUER       default http://127.0.0.1:PORT
//   OIDC_REDIRECT_URIS               comma-separated redirect_uris of the static client "atrium" (required)
//   OIDC_POST_LOGOUT_REDIRECT_URIS   comma-separated, optional
//   OIDC_KEYS_FILE                   JWKS (with private parts) to sign with; first key signs. Default: fresh RS256 key.
//   OIDC_ACCESS_TOKEN_TTL / OIDC_ID_TOKEN_TTL   seconds (default 3600)
//   OIDC_REQUIRE_PKCE=1              require PKCE for the confidential client too (default: optional, verified if sent)
//   --generate-keys                  print a fresh private RS256 JWKS on stdout and exit (for key-rotation tests)
//
// Prints "READY <issuer>" on stdout once listening; exits 0 on SIGTERM/SIGINT.
// Login: GET /interaction/:uid renders a form; POST /interaction/:uid/login with fields `login`, `password`.
// Consent is automatic (the interaction page for a consent prompt grants everything requested and redirects).
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

export const API_RESOURCE = 'urn:atrium-api'; // resource indicators must be absolute URIs
export const API_AUDIENCE = 'atrium-api';
const PASSWORD = 'pw';

// username -> groups. `kc` delivers its groups Keycloak-style as realm_access.roles instead.
const ACCOUNTS = {
  alice: ['sales'],
  bob: ['sales', 'sales-editors'],
  carol: ['sales', 'sales-admins'],
  dave: ['engineering', 'engineering-editors'],
  erin: ['engineering'],
  fiona: ['finance', 'finance-admins'],
  root: ['atrium-admins'],
  multi: ['sales', 'finance'],
  nobody: [],
  kc: { realm_access: { roles: ['engineering'] } },
};

function accountClaims(id) {
  const entry = ACCOUNTS[id];
  const claims = {
    sub: id,
    name: id[0].toUpperCase() + id.slice(1),
    preferred_username: id,
    email: `${id}@example.test`,
    email_verified: true,
  };
  if (Array.isArray(entry)) claims.groups = entry;
  else Object.assign(claims, entry);
  return claims;
}

function generateJwks() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  // RFC 7638 thumbprint as kid
  const kid = createHash('sha256').update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n })).digest('base64url');
  return { keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] };
}

const list = (v) => (v || '').split(',').map((s) => s.trim()).filter(Boolean);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const { values: args } = parseArgs({
  options: { port: { type: 'string' }, issuer: { type: 'string' }, 'generate-keys': { type: 'boolean' } },
});

if (args['generate-keys']) {
  process.stdout.write(`${JSON.stringify(generateJwks(), null, 2)}\n`);
  process.exit(0);
}

const redirectUris = list(process.env.OIDC_REDIRECT_URIS);
if (!redirectUris.length) {
  console.error('OIDC_REDIRECT_URIS is required (comma-separated list)');
  process.exit(2);
}
const jwks = process.env.OIDC_KEYS_FILE
  ? JSON.parse(readFileSync(process.env.OIDC_KEYS_FILE, 'utf8'))
  : generateJwks();

let provider; // created once we know the port (so --port 0 works)
let handle; // provider.callback()

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
}

function loginPage(uid, clientId, error) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign in</title></head><body>
<h1>Atrium test IdP</h1><p>Sign in to <b>${esc(clientId)}</b></p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
<input name="login" placeholder="username" autofocus required>
<input name="password" type="password" placeholder="password" required>
<button type="submit">Sign in</button>
</form></body></html>`;
}

// Grant everything the consent prompt says is missing (first-party client: no consent screen).
async function autoConsent(details) {
  const { prompt: { details: missing }, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return { consent: { grantId: await grant.save() } };
}

async function interactions(req, res, url) {
  const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return send(res, 404, 'not found');
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return send(res, 400, `<p>interaction error: ${esc(err.message)}</p>`); // e.g. expired / missing cookie
  }
  if (details.uid !== m[1]) return send(res, 400, 'interaction mismatch');
  const { prompt } = details;

  if (req.method === 'GET' && !m[2]) {
    if (prompt.name === 'consent') {
      return provider.interactionFinished(req, res, await autoConsent(details), { mergeWithLastSubmission: true });
    }
    return send(res, 200, loginPage(details.uid, details.params.client_id));
  }
  if (req.method === 'POST' && m[2]) {
    if (prompt.name !== 'login') return send(res, 400, `unexpected prompt ${esc(prompt.name)}`);
    const form = await readForm(req);
    const login = (form.get('login') || '').trim();
    if (!(login in ACCOUNTS) || form.get('password') !== PASSWORD) {
      return send(res, 401, loginPage(details.uid, details.params.client_id, 'Invalid username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }
  return send(res, 405, 'method not allowed');
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/interaction/')) {
    interactions(req, res, url).catch((err) => {
      console.error(err);
      if (!res.headersSent) send(res, 500, 'internal error');
    });
    return;
  }
  handle(req, res);
});

const port = Number(args.port ?? process.env.OIDC_PORT ?? 0);
server.listen(port, '127.0.0.1', () => {
  const actualPort = server.address().port;
  const issuer = args.issuer || process.env.OIDC_ISSUER || `http://127.0.0.1:${actualPort}`;
  const ttl = (name) => Number(process.env[name] || 3600);

  provider = new Provider(issuer, {
    clients: [{
      client_id: 'atrium',
      client_secret: 'atrium-secret',
      // client_secret_basic is registered; oidc-provider treats basic and post as interchangeable
      // for client-secret clients, so client_secret_post works as well.
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: redirectUris,
      post_logout_redirect_uris: list(process.env.OIDC_POST_LOGOUT_REDIRECT_URIS),
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      scope: 'openid offline_access profile email groups api',
    }],
    jwks,
    cookies: {
      keys: [randomBytes(32).toString('hex')],
      // distinct names: cookies are not port-scoped, so the app on 127.0.0.1 shares the same jar
      names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups', 'api'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups', 'realm_access'],
    },
    conformIdTokenClaims: false, // put scope-granted claims in the ID token, not only in userinfo
    findAccount: (ctx, id) => (id in ACCOUNTS
      ? { accountId: id, claims: async () => accountClaims(id) }
      : undefined),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    pkce: { required: (ctx, client) => client.clientAuthMethod === 'none' || process.env.OIDC_REQUIRE_PKCE === '1' },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: {
      AccessToken: ttl('OIDC_ACCESS_TOKEN_TTL'),
      IdToken: ttl('OIDC_ID_TOKEN_TTL'),
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 86400,
      Grant: 86400,
      RefreshToken: 86400,
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // no resource requested: scope `api` implies the Atrium API, else an opaque token (for userinfo)
        defaultResource: (ctx, client, oneOf) => oneOf
          ?? (String(ctx.oidc.params.scope || '').split(' ').includes('api') ? API_RESOURCE : undefined),
        // the code exchange need not repeat `resource`: use the one granted at authorization
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator !== API_RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: 'api',
            audience: API_AUDIENCE,
            accessTokenTTL: ttl('OIDC_ACCESS_TOKEN_TTL'),
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // identity claims in JWT access tokens for the Atrium API (tenant is derived by Atrium, not here)
    extraTokenClaims: async (ctx, token) => {
      if (token.kind !== 'AccessToken' || !token.resourceServer || !(token.accountId in ACCOUNTS)) return undefined;
      const { sub, ...claims } = accountClaims(token.accountId);
      return claims;
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><h1>oops</h1>${Object.entries(out).map(([k, v]) => `<pre>${esc(k)}: ${esc(v)}</pre>`).join('')}`;
    },
  });

  handle = provider.callback();
  console.log(`READY ${issuer}`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
