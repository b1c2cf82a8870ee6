"""Fleet-wide seat budgets when the owners' lease bucket (``<stream>_APF``) is wiped (issue 10,
session 10 defect 2), on a real nats-server: a gateway's lease client and the shard owners
(``SeatLeases``, ``SeatOwner``) talking over NATS as ``run_leases`` wires them.

- The bucket deleted under a running owner: the owner's lease cursor makes it again at its next
  claim (as on first use) and keeps the shard; before, every claim failed ("no response from
  stream") and the fleet ran on fixed shares for good.
- The bucket deleted and made again while the shard changes hands: the new owner's epoch (its
  lease's revision) starts again at 1, below the one the gateway has seen; before, the gateway took
  every reply of it for an old owner's and ignored them for good (its grant lapsed to the floor).
  Now a lower epoch is taken once replies of lower epochs have kept coming for a TTL, none of the
  newest between them."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from nats.js.api import KeyValueConfig, StorageType

from actors._apf import Dispatcher, Ticket, flow_hash, lease_floor
from actors._apf_fleet import SeatLeases, SeatOwner
from bus import open_bridge
from tests.conftest import poll_until

pytestmark = pytest.mark.integration
TTL_S = 2.0
BUCKET = "S_APF"
KEY = ("a", "lvl")


def _plc(name: str, ncs: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}"},
            "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": ncs, "lendablePercent": 0,
                                                    "limitResponse": {"type": "Queue", "queuing": {
                                                        "queues": 16, "handSize": 4, "queueLengthLimit": 50}}}}}


async def test_a_wiped_lease_bucket_is_made_again_and_a_lower_epoch_taken(nats_url: str) -> None:
    async with open_bridge(nats_url) as bridge, trio.open_nursery() as nursery:
        async def request(subject: str, payload: bytes, timeout_s: float) -> bytes:
            return (await bridge.request(subject, payload, timeout_s=timeout_s)).data

        async def js(op: Any) -> Any:
            return await bridge.run_coro(op(bridge.nc.jetstream()), timeout_s=10)

        # One gateway's lease client: 4 seats of a's lvl executing (local limit 8, floor 2), two
        # gateways alive (a fleet budget of 16): beyond the floor, so the seats are leased.
        d = Dispatcher(16)
        d.configure("a", 1, [], [_plc("lvl", 1), _plc("other", 1)], trio.current_time())
        leases = SeatLeases(d, request, gateway="client", prefix="jk", ttl_s=TTL_S, shards=1, gateways=lambda: 2)
        await nursery.start(leases.run)
        for i in range(4):
            t = Ticket("a", "s", "fs-s", "lvl", "uid-lvl", flow_hash("s", f"u{i}"), 1, trio.current_time())
            d.admit(t, trio.current_time())
        assert lease_floor(d.tenants["a"].levels["lvl"].limit) == 2

        def leased() -> bool:
            return (d.leases or {}).get(KEY, 0) >= 4 and not leases.on_fixed_share(KEY)

        async def owner(gateway: str, *, task_status: trio.TaskStatus[tuple[SeatOwner, trio.CancelScope]]
                        = trio.TASK_STATUS_IGNORED) -> None:
            o = SeatOwner(bridge, "jk", "S", gateway=gateway, ttl_s=TTL_S, shards=1)
            with trio.CancelScope() as scope:
                task_status.started((o, scope))
                await o.run()

        with trio.fail_after(60):
            # Revisions well above 1 (other keys of the bucket count too: a revision is the stream's).
            g1, g1_scope = await nursery.start(owner, "g1")
            await poll_until(lambda: 0 in g1.owned)
            kv = await js(lambda j: j.key_value(BUCKET))
            for i in range(20):
                await bridge.run_coro(kv.put(f"filler-{i}", b"x"), timeout_s=10)
            await poll_until(lambda: g1.cursors[0].revision > 20)
            g1_scope.cancel()  # (it releases its lease: g2 takes it at once)
            g2, g2_scope = await nursery.start(owner, "g2")
            await poll_until(lambda: 0 in g2.owned and g2.owned[0][0].epoch > 20)
            await poll_until(lambda: leased() and leases.epochs.get(0, 0) > 20)
            high = leases.epochs[0]

            # 1. The bucket deleted under the owner: made again at its next claim; the shard kept.
            await js(lambda j: j.delete_key_value(BUCKET))
            deleted_at = trio.current_time()
            await poll_until(lambda: g2.cursors[0].revision == 1)
            assert 0 in g2.owned and g2.owned[0][0].epoch == high  # the same owner: its epoch unchanged
            assert trio.current_time() - deleted_at < TTL_S
            # Renewals and lease requests go on (three claims of the owner's, three round trips of the
            # client's, both after the wipe), waited for as they happen: still held, still granted.
            claims, requests = g2.cursors[0].revision, leases.requests
            await poll_until(lambda: g2.cursors[0].revision >= claims + 3 and leases.requests >= requests + 3)
            assert 0 in g2.owned and leased() and leases.epochs[0] == high
            assert leases.stats().shards_down == 0

            # 2. The owner stops (without releasing: as a crash), the bucket is deleted and made
            # again, and a new owner takes the shard at epoch 1.
            async def kept(holder: str, state: Any = None) -> None:
                return None
            g2.cursors[0].release = kept  # type: ignore[method-assign]
            g2_scope.cancel()
            await js(lambda j: j.delete_key_value(BUCKET))
            await js(lambda j: j.create_key_value(KeyValueConfig(bucket=BUCKET, history=1,
                                                                 storage=StorageType.FILE)))
            g3, _ = await nursery.start(owner, "g3")
            await poll_until(lambda: 0 in g3.owned)
            assert g3.owned[0][0].epoch < high
            taken_at = trio.current_time()
            await poll_until(lambda: leases.epochs.get(0) == g3.owned[0][0].epoch and leased())
            assert trio.current_time() - taken_at < 3 * TTL_S
            assert leases.epoch_resets == 1 and leases.stats().epoch_resets == 1  # (its /metrics counter)
            nursery.cancel_scope.cancel()
