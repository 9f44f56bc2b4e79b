"""profile.md: what was profiled and on what, how to open the traces, and the top operators."""

from __future__ import annotations

import shlex

import pandas as pd

from harness.core.phases import PHASE_TEXT
from harness.core.text import code, md
from harness.profiling.request import ProfileRequest
from harness.profiling.run import ProfileResult
from harness.profiling.tables import ANNOTATION_PREFIX


def size_text(n: int) -> str:
    """Bytes for people: '84.7 KiB', '-472 B'."""
    sign, value = ("-" if n < 0 else ""), float(abs(n))
    if value < 1024:
        return f"{sign}{value:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{sign}{value:.1f} {unit}"


def table_markdown(frame: pd.DataFrame, *, by: str) -> str:
    """An operator table as markdown; operator names are escaped for table cells."""
    text = pd.DataFrame({"operator": frame["operator"].map(code), "calls": frame["calls"]})
    if by == "cuda":
        text["self CUDA (ms)"] = frame["self_cuda_ms"].map("{:.3f}".format)
        text["CUDA total (ms)"] = frame["cuda_total_ms"].map("{:.3f}".format)
        text["self CUDA share"] = frame["self_cuda_share"].map("{:.1%}".format)
        text["self CUDA mem"] = frame["self_cuda_mem"].map(size_text)
        text["CPU total (ms)"] = frame["cpu_total_ms"].map("{:.3f}".format)
    else:
        text["self CPU (ms)"] = frame["self_cpu_ms"].map("{:.3f}".format)
        text["CPU total (ms)"] = frame["cpu_total_ms"].map("{:.3f}".format)
        text["self CPU share"] = frame["self_cpu_share"].map("{:.1%}".format)
        text["self CPU mem"] = frame["self_cpu_mem"].map(size_text)
        text["CPU mem"] = frame["cpu_mem"].map(size_text)
    text["operator"] = text["operator"].map(lambda s: s.replace("|", "\\|"))
    return text.to_markdown(index=False, disable_numparse=True)


def profile_document(request: ProfileRequest, result: ProfileResult) -> str:
    """profile.md: what ran, how to open the traces, the top operators."""
    spec, case, info = request.spec, request.case, result.info
    machine = info.cuda if request.uses_cuda and info.cuda else info.processor
    about = [
        ("implementation", f"{md(spec.name)} ({md(spec.origin or 'registry')})"),
        ("family", md(spec.family)),
        ("case", code(case.id)),
        ("phase", f"{md(request.phase)}: {PHASE_TEXT[request.phase]}"),
        ("steps", f"{request.steps} profiled, after {request.warmup} warm-up steps and the "
                  f"profiler's {request.wait} wait and {request.profiler_warmup} warm-up steps"),
        ("mean profiled step", f"{result.step_ms:.3f} ms (wall, profiler overhead included)"),
        ("threads", str(info.threads)),
        ("device", f"{md(case.device)}: {md(machine)}"),
        ("torch", md(info.torch)),
        ("python", md(info.python)),
        ("commit", md((info.git_commit or "—")[:12])),
        ("created", md(info.created)),
    ]
    about_table = pd.DataFrame(about, columns=["", "value"]).to_markdown(
        index=False, disable_numparse=True
    )
    out = shlex.quote(str(result.out))
    tb, trace = shlex.quote(str(result.tb_dir)), shlex.quote(str(result.trace))
    install = "pip install 'torch-tb-profiler>=0.4.3' 'tensorboard>=2.14'"
    tensorboard = f"tensorboard --logdir {tb}"
    lines = [f"# Profile: {md(spec.name)} · {md(case.id)} · {md(request.phase)}", ""]
    if info.argv:
        lines += [f"Produced by {code(shlex.join(info.argv))}.", ""]
    lines += [
        about_table,
        "",
        "## Traces",
        "",
        f"- TensorBoard: {code(install)} (it adds the torch-tb-profiler plugin), then "
        f"{code(tensorboard)} and open the PyTorch Profiler tab.",
        f"- Perfetto or Chrome: load {code(trace)} in https://ui.perfetto.dev or "
        "chrome://tracing.",
        "",
        f"Both hold the {request.steps} profiled steps (`ProfilerStep#N`), with input shapes "
        f"and memory events; `{ANNOTATION_PREFIX}*` ranges mark the phase's parts. "
        f"Everything here is in {code(out)}.",
        "",
    ]
    cpu_total, in_ops = result.cpu_total_ms, result.operators_ms
    lines += [
        "## Top operators by self CPU time",
        "",
        f"Totals over the {request.steps} profiled steps. Shares are of all profiled CPU time, "
        f"{cpu_total:.3f} ms, of which {in_ops / cpu_total if cpu_total else 0:.1%} was inside "
        "operators; the rest is Python between them (the implementation's own code, the "
        "harness's call and the profiler's bookkeeping). Memory is net allocation (negative: "
        "freed more than allocated); *self CPU mem* counts the operator alone, *CPU mem* also "
        "the operators it called.",
        "",
        table_markdown(result.operators, by="cpu") if len(result.operators) else "No operators.",
        "",
    ]
    if result.device_operators is not None:
        lines += [
            "## Top operators by self CUDA time",
            "",
            "Each operator's self CUDA time is that of the kernels it launched; shares are of "
            "all kernel and copy time on the device.",
            "",
            table_markdown(result.device_operators, by="cuda"),
            "",
        ]
    return "\n".join(lines)


def write_profile_document(request: ProfileRequest, result: ProfileResult) -> None:
    result.report.write_text(profile_document(request, result))
