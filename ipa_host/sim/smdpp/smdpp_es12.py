"""ES12 client of the simulated SM-DP+ (SGP.22 v2.5 5.9, JSON binding 6.5): RegisterEvent and
DeleteEvent at an SM-DS over HTTPS.

    status, execution_status = call("127.0.0.1:8444", "pki/ci.crt", "registerEvent",
                                    {"eid": ..., "rspServerAddress": ..., "eventId": ...})

The SM-DS's TLS certificate must chain to `ca_path` (the test CI issues CERT.DS.TLS as it
issues CERT.DP.TLS). One connection per call, bounded by `timeout`; answers over MAX_ANSWER
bytes are refused. Mutual TLS (the SM-DP+'s client certificate, SGP.22 2.6.6) is not done.
"""

import http.client
import json
import ssl
from urllib.parse import urlsplit

PATH = "/gsma/rsp2/es12/"
HEADERS = {"Content-Type": "application/json", "X-Admin-Protocol": "gsma/rsp/v2.1.0"}
MAX_ANSWER = 64 * 1024


def call(address, ca_path, function, obj, timeout=10.0):
    """POST one ES12 function -> (HTTP status, functionExecutionStatus.status or the text of
    a non-JSON answer). OSError / ValueError when the SM-DS cannot be reached or answers
    something unreadable."""
    url = urlsplit("https://" + address)
    ctx = ssl.create_default_context(cafile=ca_path)
    conn = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=timeout, context=ctx)
    try:
        conn.request("POST", PATH + function, json.dumps(obj).encode(), HEADERS)
        resp = conn.getresponse()
        body = resp.read(MAX_ANSWER + 1)
    except http.client.HTTPException as e:
        raise ValueError("broken HTTP answer: %s" % e)
    finally:
        conn.close()
    if len(body) > MAX_ANSWER:
        raise ValueError("an answer over %d bytes" % MAX_ANSWER)
    try:
        answer = json.loads(body.decode("utf-8"))
        return resp.status, answer["header"]["functionExecutionStatus"]["status"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return resp.status, body[:200].decode("utf-8", "replace").strip()
