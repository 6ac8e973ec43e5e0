"""Plumbing: where and how a run executes: device, dtype, autocast, DDP, rank-0 printing,
logs and plots.

nanochat's common.py in spirit: every script (train, sft, sample, hellaswag) takes these from here,
so the training script holds only training.

    python runtime.py plot OUT_DIR   # draw OUT_DIR/loss.png again from OUT_DIR/log.jsonl
"""
import datetime
import fcntl
import json
import os
import sys
from contextlib import contextmanager, nullcontext

import torch
import torch.distributed as dist
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from configurator import ArgumentParser
from files import atomic_write, json_rows, read_text


# ----------------------------------------------------------------------------- device and precision
def pick_device(device=None):
    """The device to run on: the one asked for, else cuda, then mps, then cpu."""
    if device:
        here = {"cpu": True, "cuda": torch.cuda.is_available(),
                "mps": torch.backends.mps.is_available()}
        if not here.get(device.split(":")[0]):
            raise ValueError(f"device={device!r} is not available here: use one of "
                             f"{', '.join(k for k, ok in here.items() if ok)}, or leave it unset")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


DTYPES = ("float32", "bfloat16", "float16")  # what --dtype may name


def check_dtype(dtype):
    """dtype, when it is one of DTYPES -> the same str; else one ValueError naming them."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {', '.join(DTYPES)}")
    return dtype


def pick_dtype(device, dtype=None):
    """Compute dtype: bfloat16 on CUDA (float16 on GPUs without bf16), float32 on CPU and mps."""
    on_cuda = torch.device(device).type == "cuda"
    if dtype is None:
        if not on_cuda:
            return "float32"
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if check_dtype(dtype) != "float32" and not on_cuda:
        raise ValueError(f"dtype={dtype!r} is for CUDA; on {device} train in float32 "
                         "(--dtype=float32)")
    return dtype


def pick_weights_dtype(device, dtype):
    """The torch dtype to convert a model's weights to for generation (not autocast: a decode step
    reads every weight, so bfloat16 weights halve the bytes it reads). bfloat16 on a CPU needs
    avx512_bf16 or AMX, without which torch emulates it, slower than float32."""
    check_dtype(dtype)
    kind = torch.device(device).type
    if kind == "cpu" and dtype == "float16":
        raise ValueError("dtype='float16' is for GPUs; on a CPU use bfloat16 or float32")
    if kind == "cpu" and dtype == "bfloat16" and not (torch.cpu._is_avx512_bf16_supported()
                                                      or torch.cpu._is_amx_tile_supported()):
        raise ValueError("this CPU has neither avx512_bf16 nor AMX: bfloat16 would be emulated, "
                         "slower than float32; use --dtype=float32")
    return getattr(torch, dtype)


def set_generation_threads(threads=0):
    """Set torch's CPU threads -> their number: threads, or if 0 half the cores this process may
    use (at least 1). A decode step is a chain of small matrix-vector products, each split over the
    threads and waited for: on a shared machine one thread that waits for a busy core holds up all
    of them (2 threads: 2.5-3.5x slower than 1 here), and half the cores leave room for others."""
    if threads < 0:
        raise ValueError(f"threads={threads} must be >= 1, or 0 for half the cores")
    threads = threads or max(1, len(os.sched_getaffinity(0)) // 2)
    torch.set_num_threads(threads)
    return threads


def autocast_context(device, dtype):
    """Mixed precision on CUDA: matmuls in bf16/fp16, reductions and weights in float32.
    Nothing elsewhere."""
    if torch.device(device).type != "cuda" or dtype == "float32":
        return nullcontext()
    return torch.autocast(device_type="cuda", dtype=getattr(torch, dtype))


# ---------------------------------------------------------------------------------------------- DDP
def setup_ddp(device, backend=None, timeout_s=None):
    """Join the process group when launched by torchrun (RANK is set), else a single process.

    -> (ddp, rank, local_rank, world_size, device);
    on CUDA each process takes the GPU of its local rank.
    backend: None picks nccl on CUDA, gloo on CPU. timeout_s: how long a collective waits for a
    rank that does not come (None: torch's default) before the run fails."""
    if int(os.environ.get("RANK", -1)) == -1:
        return False, 0, 0, 1, device
    rank, local_rank, world_size = (int(os.environ[k])
                                    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    if torch.device(device).type == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend or ("nccl" if device.startswith("cuda") else "gloo"),
                            timeout=datetime.timedelta(seconds=timeout_s) if timeout_s else None)
    return True, rank, local_rank, world_size, device


def shard_model(model, blocks, device_type):
    """FSDP2: shard the weights, gradients and AdamW state of each block, then of the rest
    (embeddings, final norm), over all processes -> model, sharded in place. Each rank holds 1/N of
    the model between uses; a block's weights are gathered just before its forward and backward.
    On CUDA: bf16 weights and compute, gradients reduced in float32."""
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if device_type == "cuda" else MixedPrecisionPolicy()
    for block in blocks:
        fully_shard(block, mp_policy=mp)
    return fully_shard(model, mp_policy=mp)


def teardown_ddp():
    if dist.is_initialized():
        dist.destroy_process_group()


def is_master():
    """True on the process that prints, logs and writes: rank 0, or the only process."""
    return not dist.is_initialized() or dist.get_rank() == 0


def print0(*args):
    """print on rank 0 only (flushed at once: torchrun pipes the output), so N processes
    print one log."""
    if is_master():
        print(*args, flush=True)


def rng_states(device):
    """This process's RNG states (dropout masks come from them), for the checkpoint."""
    cuda = torch.cuda.get_rng_state(device) if torch.device(device).type == "cuda" else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def all_ranks(value):
    """[rank 0's value, rank 1's, ...] -> a list gathered on every rank ([value] without DDP): what
    rank 0 writes into a checkpoint so that each process resumes its own state."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def set_rng_states(states, device):
    """Continue the RNG streams that rng_states saved."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


# ------------------------------------------------------------------------------------ out_dir
def lock_out_dir(out_dir):
    """out_dir (created if need be) locked by this process -> the open lock file, out_dir/run.lock,
    holding this process's pid. Closing it unlocks, and so does the process ending, however it
    ends. Another run that holds the lock is a ValueError naming its pid."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out_dir={out_dir!r} is a file, not a directory: pick another --out_dir")
    try:
        os.makedirs(out_dir, exist_ok=True)
        lock = open(os.path.join(out_dir, "run.lock"), "a+")  # a+: another run's pid stays
    except OSError as e:  # no permission, a parent that is a file, ...
        raise ValueError(f"out_dir={out_dir!r} cannot be written ({e.strerror}): pick another "
                         "--out_dir") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        pid = lock.read().strip() or "unknown"
        lock.close()
        raise ValueError(f"out_dir={out_dir!r} is in use by another run (pid {pid}): wait for it, "
                         "stop it, or pick another --out_dir") from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


@contextmanager
def claim_out_dir(out_dir, init_from, overwrite):
    """Hold out_dir for the run inside the with block (yields nothing): rank 0 locks it, so that two
    runs never mix their log.jsonl and checkpoints, and a fresh run (init_from other than resume)
    may not replace an earlier run's ckpt.pt unless overwrite. An error on rank 0 stops every rank,
    none waiting for a rank 0 that has stopped."""
    lock, error = None, None
    if is_master():
        try:
            lock = lock_out_dir(out_dir)
            if init_from != "resume" and not overwrite \
                    and os.path.isfile(os.path.join(out_dir, "ckpt.pt")):
                raise ValueError(f"{out_dir}/ckpt.pt holds an earlier run: continue it with "
                                 "--init_from=resume, pick another --out_dir, or replace it (and "
                                 "its log.jsonl) with --overwrite=True")
        except ValueError as e:
            error = e
    if dist.is_initialized():
        box = [error]
        dist.broadcast_object_list(box)
        error = box[0]
    try:
        if error is not None:
            raise error
        yield
    finally:
        if lock is not None:
            lock.close()


def duration(seconds):
    """seconds as 1h02m, 3m20s or 12s -> a str: how long a run still needs, read at a glance."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


# ----------------------------------------------------------------------------------- logs and plots
class JsonlLogger:
    """Append one JSON object per line to path; does nothing on DDP ranks other than 0.

    keep_before: drop the rows with iter >= keep_before first (0 on a fresh run; the
    checkpoint's iteration on resume, so rows logged after that checkpoint by a killed run do not
    appear twice)."""

    def __init__(self, path, keep_before=None, wandb_run=None):
        self.path, self.wandb_run = path, wandb_run  # wandb_run: start_wandb's, mirrors every row
        self.enabled = is_master()
        if self.enabled and keep_before is not None and os.path.isfile(path):
            # keep_before=0 keeps nothing, so a fresh run never reads (nor trips on) an old log
            kept = [] if keep_before <= 0 else [row for row in read_log(path)
                                                if row.get("iter", 0) < keep_before]
            atomic_write(path, lambda f: f.write("".join(json.dumps(row) + "\n"
                                                         for row in kept).encode()))

    def log(self, row):
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
            if self.wandb_run is not None:
                self.wandb_run.log(row, step=row.get("iter"))


def read_log(path):
    """The rows of a log.jsonl (dicts, in order), for a resumed run and for plots.

    A last line cut short (a run killed while appending it: no newline, not JSON) is dropped, and
    said on stderr; any other line that is not a JSON object is a ValueError naming the line."""
    *lines, last = read_text(path, "log").split("\n")  # last: "" after a whole final line
    numbered = list(enumerate(lines, 1))
    if last.strip():
        try:
            json.loads(last)
            numbered.append((len(lines) + 1, last))  # whole, only its newline missing
        except json.JSONDecodeError:
            print(f"{path}:{len(lines) + 1}: dropped a torn last line (a run stopped while "
                  "writing it)", file=sys.stderr)
    rows = []
    try:
        for n, row in json_rows(numbered, path):
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: a JSON {type(row).__name__}, not an object")
            rows.append(row)
    except ValueError as e:
        raise ValueError(f"{e}; fix or delete that line (only a torn last line is skipped)") \
            from None
    return rows


def start_wandb(project, run_name, config):
    """A Weights & Biases run on rank 0 (None elsewhere), for JsonlLogger to mirror its rows to.
    wandb is optional: only a run that asks for it (wandb_log=True) needs it installed."""
    if not is_master():
        return None
    try:
        import wandb
    except ImportError:
        raise ImportError("wandb_log=True needs the wandb package: pip install wandb (or leave "
                          "wandb_log off: log.jsonl and loss.png hold the same rows)") from None
    return wandb.init(project=project, name=run_name or None, config=config)


_said_no_matplotlib = False


def plot_log(out_dir):
    """The path of out_dir/loss.png, after drawing out_dir/log.jsonl in it and printing that path;
    or None when matplotlib is not installed (said once per process).

    The losses over iterations (train.py: loss, eval train/val loss), or over epochs for sft.py's
    log (rows with an "epoch" key end its epochs; its val_loss is the held-out loss), and the
    gradient norm below them."""
    global _said_no_matplotlib
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        if not _said_no_matplotlib:
            print("matplotlib is not installed, so no loss-curve PNG (pip install matplotlib)")
            _said_no_matplotlib = True
        return None
    rows = read_log(os.path.join(out_dir, "log.jsonl"))
    x, xlabel, names = _x_axis(rows)
    norms = [(x(r), r["grad_norm"]) for r in rows if r.get("grad_norm") is not None]
    fig, axes = plt.subplots(2 if norms else 1, 1, figsize=(8, 7 if norms else 5), sharex=True,
                             squeeze=False)
    ax = axes[0, 0]
    for key, style in (("loss", "-"), ("train_loss", "o-"), ("val_loss", "o-")):
        points = [(x(r), r[key]) for r in rows if key in r]
        if points:
            ax.plot(*zip(*points), style, label=names.get(key, key),
                    alpha=0.5 if key == "loss" else 1.0)
    ax.set(xlabel=xlabel, ylabel="cross-entropy loss", title=out_dir)
    ax.legend()
    if norms:  # spikes here come before a loss blows up: the first thing to look at
        axes[1, 0].plot(*zip(*norms), "-", color="tab:red", alpha=0.7)
        axes[1, 0].set(xlabel=xlabel, ylabel="gradient norm (before clipping)", yscale="log")
    path = os.path.join(out_dir, "loss.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")
    return path


def _x_axis(rows):
    """(row -> where it goes on the x-axis, the axis's label, legend names by key).

    Iterations for train.py's log. Epochs for sft.py's: a row with an "epoch" key ends that epoch,
    and a step's row goes between the epoch ends around its iteration."""
    ends = [(0, 0)] + [(r["iter"], r["epoch"]) for r in rows if "epoch" in r]
    if len(ends) == 1:
        return (lambda row: row["iter"]), "iteration", {}

    def epoch(row):  # past the last end (a run stopped mid-epoch): at the last epoch's pace
        i = row["iter"]
        k = next((k for k in range(1, len(ends)) if i <= ends[k][0]), len(ends) - 1)
        (i0, e0), (i1, e1) = ends[k - 1], ends[k]
        return e0 + (e1 - e0) * (i - i0) / max(i1 - i0, 1)
    return epoch, "epoch", {"loss": "training loss (steps)", "train_loss": "training loss "
                            "(epoch mean)", "val_loss": "held-out loss"}


# ------------------------------------------------------------------------------------ command line
def main(argv=None):
    """`python runtime.py plot OUT_DIR`: draw OUT_DIR/loss.png again from OUT_DIR/log.jsonl (a
    run's plot, e.g. of a run that was stopped). A bad OUT_DIR is one `error: ...` line."""
    parser = ArgumentParser(description="Draw a run's loss.png again from its log.")
    commands = parser.add_subparsers(dest="command", required=True)
    plot = commands.add_parser("plot", help="draw OUT_DIR/loss.png from OUT_DIR/log.jsonl")
    plot.add_argument("out_dir", metavar="OUT_DIR", help="a train.py or sft.py out_dir")
    args = parser.parse_args(argv)
    try:
        if not os.path.isfile(os.path.join(args.out_dir, "log.jsonl")):
            raise ValueError(f"{args.out_dir} has no log.jsonl; give the out_dir of a train.py "
                             "or sft.py run")
        if plot_log(args.out_dir) is None:
            raise SystemExit(1)  # no matplotlib, as plot_log said
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
