/*
Remove members from an ONLYOFFICE DocSpace group (Node 18+, global fetch).

Written for roster's tests after ONLYOFFICE's docspace-samples
api-backend/nodejs/samples/remove-members-from-group.js (commit f159efff), with the same
request: DELETE /api/2.0/group/{groupId}/members, a JSON body {"members": [...]}, the key in
the Authorization header as is (no "Bearer "), and any 2xx (res.ok) taken as success. Like the
sample, it prints the outcome and exits 0 either way.

The test replaces API_HOST, API_KEY and the two placeholder IDs below.
*/

// Your DocSpace portal and API key
const API_HOST = 'https://yourportal.onlyoffice.com';
const API_KEY = 'your_api_key';

const HEADERS = {
  Authorization: API_KEY,
  'Content-Type': 'application/json',
};

async function removeGroupMembers(groupId, members) {
  const res = await fetch(`${API_HOST}/api/2.0/group/${groupId}/members`, {
    method: 'DELETE',
    headers: HEADERS,
    body: JSON.stringify({ members }),
  });
  if (!res.ok) {
    const text = await res.text();
    console.log(`failed: HTTP ${res.status}: ${text}`);
    return;
  }
  console.log(`removed ${JSON.stringify(members)} from group ${groupId}`);
}

(async () => {
  try {
    await removeGroupMembers(
      'c652dba3-210e-436d-b264-df5ceda0a48e', // the group
      ['4c65a238-ca50-4374-b904-0d51d4c1822b'], // the members to remove
    );
  } catch (err) {
    console.log(`error: ${err.message}`);
  }
})();
