"""Notifications to an SM-DP+ (SGP.22 v2.5 5.6.4 ES9+.HandleNotification, 3.5) for
ipa_core.ipa_notify, over networks from ipa.smdp_network(address) (ipa_core.ipa_direct).

An SM-DP+ that does not take a notification (unreachable, an HTTP error, an ES9+ "Failed"
status: SGP.22 gives HandleNotification no error answer, so a refusal means a wrong
address or a broken server, never a bad notification) keeps it on the eUICC and is left
alone for a while: per address, error_backoff_s x backoff_factor^(failures-1), at most
max_error_backoff_s (Ipa.next_poll_delay_ms of a failed cycle), kept in the store
(ipa.notifyBackoff, at most MAX_BACKOFF_ENTRIES addresses) so that separate runs (`ipa
poll` from cron, restarts of `ipa run`) do not try it every cycle; a pass with `force`
(the user's `ipa notifications process`) tries it anyway; the first notification it takes
clears the record. Apart from ipa_notify so that a board, which passes no factory, never
loads this nor es9p.
"""

from ipa_core.errors import IpaError
from ipa_core.ipa_direct import DirectTransport
from ipa_core.ipa_store import NOTIFY_BACKOFF
from ipa_core.stream import close_quietly

MAX_BACKOFF_ENTRIES = 16  # SM-DP+ addresses whose back-off the store keeps


def backoff_left(ipa, addr):
    """Seconds until `addr` may be tried again (0: now)."""
    rec = (ipa.store.get(NOTIFY_BACKOFF) or {}).get(addr)
    if rec is None:
        return 0
    return max(0, int(rec.get("until", 0) - ipa.now_s()))


def backoff_failed(ipa, addr):
    """One more failure of `addr`: the next try waits longer. Returns that wait in seconds."""
    table = ipa.store.get(NOTIFY_BACKOFF) or {}
    n = (table.get(addr) or {}).get("failures", 0) + 1
    delay_s = ipa.next_poll_delay_ms({"error": True, "errorCount": n}) // 1000
    table[addr] = {"failures": n, "until": ipa.now_s() + delay_s}
    while len(table) > MAX_BACKOFF_ENTRIES:  # the entry retried soonest goes
        del table[min(table, key=lambda a: table[a]["until"])]
    ipa.store.put(NOTIFY_BACKOFF, table)
    return delay_s


def backoff_clear(ipa, addr):
    table = ipa.store.get(NOTIFY_BACKOFF) or {}
    if addr in table:
        del table[addr]
        if table:
            ipa.store.put(NOTIFY_BACKOFF, table)
        else:
            ipa.store.delete(NOTIFY_BACKOFF)


class SmdpPeers:
    """The SM-DP+ connections of one delivery pass, opened on first use and closed at its
    end; an address that failed in this pass, or is backing off, is not tried in it."""

    def __init__(self, ipa, force):
        self.ipa = ipa
        self.force = force
        self.open = {}  # address -> (network, DirectTransport), or None: not in this pass

    def _transport(self, addr, p):
        if addr in self.open:
            pair = self.open[addr]
            return None if pair is None else pair[1]
        self.open[addr] = None
        left = 0 if self.force else backoff_left(self.ipa, addr)
        if left:
            p["retryInS"] = left
            self.ipa.note("info", "notifications for %s kept: retried in %d s" % (addr, left))
            return None
        try:
            net = self.ipa.smdp_network(addr)
        except IpaError:
            raise
        except Exception as e:  # a bad address or TLS setup is this peer's failure, not the pass's
            raise IpaError("no network to the SM-DP+ %s: %s: %s" % (addr, type(e).__name__, e))
        self.open[addr] = (net, DirectTransport(net))
        return self.open[addr][1]

    def deliver(self, addr, raw, p):
        """ES9+.HandleNotification of `raw` to the SM-DP+ at `addr` -> "delivered" (it
        answered 2xx), "failed" (this try failed: back-off, p["error"]) or "kept" (not
        tried in this pass)."""
        try:
            t = self._transport(addr, p)
            if t is None:
                return "kept"
            t.handle_notification(raw)
        except IpaError as e:
            pair = self.open.get(addr)
            self.open[addr] = None
            if pair is not None:
                close_quietly(pair[0])
            p["error"] = "%s: %s" % (type(e).__name__, e)
            p["retryInS"] = backoff_failed(self.ipa, addr)
            self.ipa.note("warning", "notifications for the SM-DP+ %s kept, retried in %d s: %s"
                          % (addr, p["retryInS"], e))
            return "failed"
        backoff_clear(self.ipa, addr)
        return "delivered"

    def close(self):
        for pair in self.open.values():
            if pair is not None:
                close_quietly(pair[0])
        self.open = {}
