"""Case grids the op suites share: fla's shapes — lengths around chunk boundaries (1, 15, 63,
64, 65, 100, 1000, 2100), decode calls, head dimensions that are not powers of two (100), one
and several heads, variable lengths with empty and length-1 sequences — small enough for exact
comparisons."""

from __future__ import annotations

from harness.core.op_case import OpCase

BASE = OpCase(seq_len=63, batch=2, heads=4, key_dim=16, value_dim=16, with_state=True)

STRESS_HEADS = {"mixed-heads": 8}  # gate stresses drawn over more heads than a grid's own


def stressed(case: OpCase, stress: str) -> OpCase:
    """``case`` under the family's gate stress ``stress``, over the heads it is drawn for."""
    return case.with_(stress=stress, heads=STRESS_HEADS.get(stress, case.heads))


def values(fam) -> list[OpCase]:
    cases = [BASE.with_(seq_len=t) for t in (1, 15, 63, 64, 65, 100)]
    cases += [BASE.with_(seq_len=1000, batch=1, heads=1),
              BASE.with_(seq_len=65, heads=1, key_dim=64, value_dim=64),
              BASE.with_(seq_len=63, key_dim=100, value_dim=64),
              BASE.with_(seq_len=64, key_dim=16, value_dim=100),
              BASE.with_(seq_len=65, with_state=False),
              BASE.with_(seq_len=65, dtype="float64"),
              # K^-1/2 not exact in float32 (16^-1/2 is): a scale computed or cached in
              # float32 shows in a float64 call
              BASE.with_(seq_len=40, key_dim=100, value_dim=24, dtype="float64"),
              BASE.with_(seq_len=1, scale=1.0),  # a one-token (decode) call with a scale
              # decode calls as generation makes them: the first token (no cache yet), one
              # not asking for the state back, one from a bfloat16 model (its state float32)
              BASE.with_(seq_len=1, with_state=False),
              BASE.with_(seq_len=1, final_state=False),
              BASE.with_(seq_len=1, dtype="bfloat16"),
              BASE.with_(seq_len=100, heads=1, dtype="float64", with_state=False),
              # the op's own initial state, in eight rows: where a first input gate is below
              # its log forget gate, mLSTM's m_0 shows in every output (eps e^m, 1e-7 here)
              BASE.with_(seq_len=15, dtype="float64", with_state=False),
              BASE.with_(seq_len=65, scale=1.0),  # a scale passed (Mamba-2's SSD: 1)
              BASE.with_(seq_len=100, final_state=False),  # as training calls it
              # as a bfloat16 model calls it: o in bfloat16, the state in float32
              BASE.with_(seq_len=100, dtype="bfloat16"),
              BASE.with_(seq_len=65, dtype="bfloat16", with_state=False),
              # float16 where an op declares it (its range ends at 65504: e^(-b) of a chunk's
              # decays overflows there unless computed wider)
              BASE.with_(seq_len=100, dtype="float16"),
              BASE.with_(seq_len=1, dtype="float16")]
    # a large call (2^19 values in q): work split into blocks only at large sizes (groups of
    # chunks held in the caches, tiles over T) must carry the state from block to block
    cases.append(BASE.with_(seq_len=1024, batch=2, key_dim=64, value_dim=64))
    # past 2048 steps, where long sequences are cut into segments that carry the state
    cases.append(BASE.with_(seq_len=2100, batch=1, heads=1))
    # float64 under strong decays (e^-10 to e^-69 a step): a path taken only there (the
    # masked exponential of segment sums) that builds a buffer in float32 shows at 1e-10
    cases += [stressed(BASE.with_(seq_len=65, dtype="float64"), stress)
              for stress in ("s0.1", "s0.01") if stress in fam.stresses]
    return cases


def varlen(fam) -> list[OpCase]:
    one = BASE.with_(batch=1)
    return [one.with_(seq_len=15, lengths=(0, 15)),
            one.with_(seq_len=16, lengths=(0, 0, 16)),
            one.with_(seq_len=83, lengths=(1, 17, 0, 65)),
            one.with_(seq_len=130, lengths=(64, 1, 65), dtype="float64"),
            one.with_(seq_len=40, lengths=(20, 20), with_state=False),
            one.with_(seq_len=64, lengths=(5, 35, 24), scale=0.3),  # a scale with cu_seqlens
            one.with_(seq_len=22, lengths=(5, 17, 0, 0)),  # empty sequences at the end
            # equal lengths apart, each with its own initial and final state: sequences
            # batched by length must come back in their own rows
            one.with_(seq_len=27, lengths=(5, 17, 5)),
            # as many tokens as sequences, not one each: continuous batching's decode step
            # (one token per sequence) must not be assumed from the count
            one.with_(seq_len=3, lengths=(2, 0, 1))]
