"""schemathesis hooks for tests/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

A raw inbox message (GET /api/v1/inbox/messages/{id}/raw) is served as
application/octet-stream and described as a string of octets (type string,
format binary). schemathesis has no deserializer for that media type and
would skip checking those responses; this one hands it the bytes as a
string (latin-1 maps every byte to one character), so they are checked
against the document like every other response.
"""

import schemathesis


@schemathesis.deserializer("application/octet-stream")
def octets(ctx, response):
    return response.content.decode("latin-1")
