"""The registry entries of the families torch does not have, published through the
``seq_harness.impls`` entry-point group: each family's reference loop (``<family>-loop``) and a
fast implementation (a chunked parallel scan for the linear recurrences, a fused loop for
IndRNN). Chunked entries scan 64 steps at a time, a good compromise on a CPU between the
short sequences where the loop is hard to beat and the long ones where the scan wins; the
suites also build them at other chunk sizes (their ``chunk_size=`` constructor argument)."""

from __future__ import annotations

import functools

from harness.core.spec import Capabilities, ImplSpec
from harness.families.indrnn import IndRNNLoop
from harness.families.minimal import MinGRULoop, MinLSTMLoop
from harness.families.rglru import RGLRULoop
from harness.impls.diagonal import IndRNNFused, RGLRUScan
from harness.impls.minimal_scan import MinGRUScan, MinLSTMScan

CHUNK = 64  # steps per chunk of the registry's scan entries
LOOPS = Capabilities(zero_length=True)
SCANS = Capabilities(zero_length=True, chunked=True)

_entry = functools.partial(ImplSpec, origin="builtin")

MINGRU_LOOP = _entry(name="mingru-loop", family="mingru", factory=MinGRULoop,
                     capabilities=LOOPS, description="minGRU reference: the sequential loop")
MINGRU_SCAN = _entry(name="mingru-scan", family="mingru",
                     factory=functools.partial(MinGRUScan, chunk_size=CHUNK), capabilities=SCANS,
                     description=f"minGRU as a parallel scan in {CHUNK}-step chunks")
MINLSTM_LOOP = _entry(name="minlstm-loop", family="minlstm", factory=MinLSTMLoop,
                      capabilities=LOOPS, description="minLSTM reference: the sequential loop")
MINLSTM_SCAN = _entry(name="minlstm-scan", family="minlstm",
                      factory=functools.partial(MinLSTMScan, chunk_size=CHUNK),
                      capabilities=SCANS,
                      description=f"minLSTM as a parallel scan in {CHUNK}-step chunks")
INDRNN_LOOP = _entry(name="indrnn-loop", family="indrnn", factory=IndRNNLoop,
                     capabilities=LOOPS, description="IndRNN reference: the sequential loop")
INDRNN_FUSED = _entry(name="indrnn-fused", family="indrnn", factory=IndRNNFused,
                      capabilities=LOOPS,
                      description="IndRNN, projection hoisted, one fused elementwise step")
RGLRU_LOOP = _entry(name="rglru-loop", family="rglru", factory=RGLRULoop, capabilities=LOOPS,
                    description="RG-LRU reference: the sequential loop")
RGLRU_SCAN = _entry(name="rglru-scan", family="rglru",
                    factory=functools.partial(RGLRUScan, chunk_size=CHUNK), capabilities=SCANS,
                    description=f"RG-LRU as a parallel scan in {CHUNK}-step chunks")
