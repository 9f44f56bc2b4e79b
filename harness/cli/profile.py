"""``seq-harness profile IMPL``: one implementation on one case under torch.profiler — traces for
TensorBoard and Perfetto, and profile.md with the top operators."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import CHECK_FAILED, usage_errors
from harness.conformance.options import FAMILY
from harness.profiling.request import DEFAULT_SHAPE, ProfileError, ProfileRequest, parse_shape
from harness.profiling.run import profile
from harness.records import new_run_id
from harness.registry import choose_one
from harness.report.profile import write_profile_document


def add_parser(commands) -> None:
    profiler = commands.add_parser(
        "profile", help="profile one implementation on one case: traces and the top operators")
    profiler.add_argument("impl", nargs="?", metavar="IMPL",
                          help="registry entry (see seq-harness list); or --impl-class")
    profiler.add_argument("--impl-class", metavar="MODULE:CLASS",
                          help="your nn.Module class with torch's RNN/LSTM/GRU contract")
    profiler.add_argument(FAMILY.flag, **FAMILY.settings)
    profiler.add_argument("--shape", default=DEFAULT_SHAPE, metavar="T,B,I,H[,L]",
                          help="seq_len, batch, input_size, hidden_size[, num_layers] "
                          f"(default: {DEFAULT_SHAPE})")
    profiler.add_argument("--phase", default="inference", metavar="PHASE",
                          help="inference (default), forward or forward_backward")
    profiler.add_argument("--steps", type=int, default=5, metavar="N",
                          help="profiled steps (default 5)")
    profiler.add_argument("--warmup", type=int, default=2, metavar="N",
                          help="steps run before the profiler starts (default 2)")
    profiler.add_argument("--top", type=int, default=20, metavar="N",
                          help="rows of the operator tables (default 20)")
    profiler.add_argument("--threads", type=int, default=1, metavar="N",
                          help="torch threads (default 1)")
    profiler.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                          help="device the implementation runs on (default: cpu)")
    profiler.add_argument("--out", metavar="DIR",
                          help="profile directory (default: results/profile-RUN_ID)")
    profiler.add_argument("--overwrite", action="store_true",
                          help="replace an earlier profile in --out")


def command(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        with usage_errors():
            spec = choose_one(impl=args.impl, impl_class=args.impl_class, family=args.family)
            request = ProfileRequest(
                spec, parse_shape(args.shape, device=args.device), phase=args.phase,
                steps=args.steps, warmup=args.warmup, threads=args.threads, top=args.top,
            )
            out = Path(args.out) if args.out else Path("results") / f"profile-{new_run_id()}"
            result = profile(request, out, overwrite=args.overwrite,
                             argv=["seq-harness", *argv])
    except ProfileError as error:  # the implementation failed: one line, exit 1
        print(f"seq-harness: error: {error}", file=sys.stderr)
        return CHECK_FAILED
    write_profile_document(request, result)
    print(f"seq-harness: profile of {spec.name} ({request.phase}, {request.case.id}) in "
          f"{result.report}; traces: {result.trace} (Perfetto) and {result.tb_dir} (TensorBoard)")
    return 0
