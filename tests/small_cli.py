"""``vfe-hub`` with DetPro's registry entry at the test size (:func:`small_models.tiny_detpro_spec`), for tests that
run the command line in subprocesses, e.g. ``python -m torch.distributed.run --nproc-per-node 2 tests/small_cli.py
evaluate detpro_r50_fpn_lvis1 lvis_v1_val --weights DIR --root ROOT --out-dir OUT``."""
import sys

from small_models import DETPRO, tiny_detpro_spec
from vfe_hub import cli, registry

if __name__ == "__main__":
    registry.MODELS[DETPRO] = tiny_detpro_spec()
    sys.exit(cli.main(sys.argv[1:]))
