// A real OpenID Connect provider (the npm package oidc-provider) for the dashboard's sign-in test.
// Usage: node provider.mjs PORT REDIRECT_URI CLIENT_ID CLIENT_SECRET
// Its development login form accepts any login and password; the account's email is the login.
import Provider from "oidc-provider";

const [port, redirectUri, clientId, clientSecret] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [redirectUri], // Streamlit's st.logout returns to its redirect_uri
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  conformIdTokenClaims: false, // the ID token carries email and name (Streamlit reads st.user from it)
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id, email_verified: true, name: `Test user ${id}` };
      },
    };
  },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => false },
  cookies: { keys: ["a-test-only-cookie-signing-key"] },
});
provider.listen(Number(port), "127.0.0.1", () => console.log(`oidc-provider ready at ${issuer}`));
