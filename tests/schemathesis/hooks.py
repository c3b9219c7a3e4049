"""schemathesis hooks for tests/schemathesis/run.sh (loaded via SCHEMATHESIS_HOOKS).

The run signs in as one seeded admin. Once schemathesis has seen that
admin's id (it is in `GET /api/profile` and `GET /api/admin/users`), user
administration could take the account away: promote the seeded user to
admin, then demote, disable or delete the run's admin, which the server
rightly allows once another admin exists. After that no sign-in works and
every later request is a guest's. So a call of `PATCH /api/admin/users/{id}`
or `DELETE /api/users/{id}` aimed at the run's own admin is sent for the
seeded user instead; every other id, valid or not, goes out as generated.
"""

import atexit
import os
import sys

import schemathesis

ADMIN_ID = os.environ["ST_ADMIN_ID"].lower()
STAND_IN_ID = os.environ["ST_USER_ID"]
USER_ADMINISTRATION = {"PATCH /api/admin/users/{id}", "DELETE /api/users/{id}"}
redirected = 0


@atexit.register
def report():
    if redirected:
        print(f"hooks.py: {redirected} call(s) aimed at the run's own admin were sent for the seeded user", file=sys.stderr)


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.label not in USER_ADMINISTRATION:
        return
    parameters = case.path_parameters
    if isinstance(parameters, dict) and str(parameters.get("id", "")).strip().lower() == ADMIN_ID:
        global redirected
        redirected += 1
        parameters["id"] = STAND_IN_ID
