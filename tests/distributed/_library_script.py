"""One process of a two-process check of the library pieces (run by test_launch.py):
``python _library_script.py PORT ID OUT.json``. Prints nothing; writes its findings as JSON."""

import json
import sys

from spheres import distributed

port, me, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
distributed.initialize(distributed.parse_launch(f"127.0.0.1:{port}", 2, me, timeout=60))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

import attacks  # noqa: E402
from spheres.sharding import across_processes, host_local  # noqa: E402
from spheres.sphere import data as sdata, evaluate, models  # noqa: E402

found = {"process_count": jax.process_count(), "device_count": jax.device_count(),
         "writer": distributed.is_writer()}
# process 0's values everywhere
found["bytes"] = distributed.broadcast_bytes(b"from process 0" if me == 0 else None).decode()
found["empty"] = distributed.broadcast_bytes(b"" if me == 0 else None).decode()
found["on_writer"] = distributed.on_writer(lambda: {"me": jax.process_index()})
try:
    distributed.on_writer(lambda: (_ for _ in ()).throw(ValueError("bad on the writer")))
except ValueError as e:
    found["error"] = [type(e).__name__, str(e)]

# streaming error counts: the global mesh (each process evaluates its rows, integer sum) and this
# process alone (its 2 devices, every row) count the same points
model = models.QuadraticNet(hidden=12)
variables = model.init(jax.random.key(1), np.zeros((1, 10), np.float32))
fn = models.logit_fns(model).batched
kw = dict(key=jax.random.key(2), d=10, radius=1.0, label=0, n=9_000, chunk=1_000, progress=False)
found["errors_global"] = evaluate.sphere_error_rate(fn, variables, **kw).errors
found["errors_local"] = evaluate.sphere_error_rate(fn, host_local(variables),
                                                   mesh=Mesh(np.asarray(jax.local_devices()), ("data",)),
                                                   **kw).errors

# attack start points split over the processes: every process gets every row, equal to one process
# attacking them all
x = sdata.sample_sphere(jax.random.key(3), 7, 10, 1.0)
local = host_local(variables)
f = models.logit_fns(model).per_example


def attack(xs):
    return attacks.sphere_pgd(f, xs, np.zeros(xs.shape[0], np.int32), step_size=0.01, num_steps=20,
                              mode="nearest", params=local)


split = across_processes(attack, x)
whole = attack(np.asarray(x))
found["attack_rows"] = int(split.distance.shape[0])
found["attack_max_gap"] = float(np.max(np.abs(np.asarray(split.distance) - np.asarray(whole.distance))))
found["attack_success_equal"] = bool(np.array_equal(np.asarray(split.success), np.asarray(whole.success)))
with open(out, "w") as fh:
    json.dump(found, fh)
distributed.finish(True)
