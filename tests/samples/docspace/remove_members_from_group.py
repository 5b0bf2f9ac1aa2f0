"""Remove members from an ONLYOFFICE DocSpace group.

Written for roster's tests after ONLYOFFICE's docspace-samples
`api-backend/python/samples/remove-members-from-group.py` (commit f159efff), with the same
request: DELETE /api/2.0/group/{groupId}/members, a JSON body {"members": [...]}, the key in
the Authorization header as is (no "Bearer "), and status 200 taken as success. Like the
sample, it prints the outcome and exits 0 either way.

The test replaces API_HOST, API_KEY and the two placeholder IDs below.
"""

import requests

# Your DocSpace portal and API key
API_HOST = 'https://yourportal.onlyoffice.com'
API_KEY = 'your_api_key'

HEADERS = {
    'Authorization': API_KEY,
    'Content-Type': 'application/json',
}


def remove_group_members(group_id, members):
    url = f'{API_HOST}/api/2.0/group/{group_id}/members'
    response = requests.delete(url, json={'members': members}, headers=HEADERS)
    if response.status_code == 200:
        print(f'removed {members} from group {group_id}')
    else:
        print(f'failed: HTTP {response.status_code}: {response.text}')


if __name__ == '__main__':
    remove_group_members(
        'c652dba3-210e-436d-b264-df5ceda0a48e',  # the group
        ['4c65a238-ca50-4374-b904-0d51d4c1822b'],  # the members to remove
    )
