"""Sweeps on Ray Tune (``aortic-root sweep ... --ray local|auto|ADDRESS``): one trial per run, with its CPUs and
GPUs, the results gathered into the same summary; optionally ASHA stops hopeless runs early (``--asha``).

Ray is an optional extra (``pip install -e '.[distributed]'``, i.e. ``ray[tune]``), imported only here, and only
when a sweep asks for it. Each trial calls the same :func:`sweep.run_one` as a local sweep: it trains the run into
its folder in the sweep folder (shared storage when the cluster has several machines: every node needs the project
installed and the same paths) and reports each epoch's validation median (the metric ASHA compares at equal epochs)
and, at the end, the run's summary row. Ray Tune's own records go to ``ray/`` in the sweep folder.

A trial ASHA stops leaves its run folder as a killed run would (resumable checkpoints), with ``stopped.json``; the
summary marks it ``stopped`` and it is never chosen. A resumed sweep leaves stopped runs stopped (delete a run's
stopped.json to train it to the end) and hands Ray only the runs that are not finished.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from AorticRootLandmarksLib.errors import InputError

from .config import TrainConfig
from .sweep import CV_EVALUATION, STOPPED, failed_row, run_one, stopped_row, trained
from .sweep_spec import Execution

#: Ray Tune's records, inside the sweep folder.
RAY_FOLDER = "ray"
#: What each trial reports after every epoch (and at its end), and what ASHA minimises.
METRIC = "val_median_mm"
_INSTALL = "pip install -e '.[distributed]' (or pip install 'ray[tune]')"


def import_ray():
    """(ray, ray.tune), or a one-line InputError saying how to install them."""
    try:
        import ray
        from ray import tune
    except ImportError:
        raise InputError(f"--ray needs Ray Tune, an optional extra that is not installed: {_INSTALL}") from None
    return ray, tune


def run_on_ray(jobs: list[tuple[str, TrainConfig]], execution: Execution, resume: bool = False) -> list[dict]:
    """One summary row per (name, config), as :func:`sweep.run_jobs`; unfinished runs are Ray trials."""
    ray, tune = import_ray()
    settled = {name for name, config in jobs if resume and _settled(Path(config.out), config.folds)}
    rows = {name: run_one(config, name, resume) for name, config in jobs if name in settled}  # read back, no training
    pending = [(name, config) for name, config in jobs if name not in settled]
    if pending:
        started = _connect(ray, execution.ray)
        try:
            rows.update(_tune(tune, pending, execution, resume))
        finally:
            if started:
                ray.shutdown()
    return [rows[name] for name, _ in jobs]


def _settled(run: Path, folds: int) -> bool:
    """A run that needs no trial: stopped by ASHA, or trained and evaluated out of fold."""
    return (run / STOPPED).is_file() or (trained(run, folds) and (run / CV_EVALUATION / "summary.json").is_file())


def _connect(ray, address: str) -> bool:
    """Start ('local') or join ('auto', an address) Ray; True if this process started it (and ends it)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"--ray {address}: no Ray cluster there ({text}); start one with 'ray start --head' or "
                         "give --ray local") from None  # fmt: skip
    return address == "local"


def _tune(tune, pending: list[tuple[str, TrainConfig]], execution: Execution, resume: bool) -> dict[str, dict]:
    """Run the pending runs as trials of one Tune experiment; {name: summary row}."""
    threads = max(1, int(execution.cpus_per_trial))
    jobs = {name: (dataclasses.replace(config, threads=config.threads or threads), resume) for name, config in pending}
    resources = {"cpu": execution.cpus_per_trial, "gpu": execution.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(_trial, jobs=jobs), resources)
    out = Path(pending[0][1].out).parent
    tuner = tune.Tuner(
        trainable,
        param_space={"run": tune.grid_search([name for name, _ in pending])},
        tune_config=tune.TuneConfig(metric=METRIC, mode="min", scheduler=_scheduler(execution, pending),
                                    trial_dirname_creator=lambda trial: trial.config["run"]),  # fmt: skip
        run_config=tune.RunConfig(name="tune", storage_path=str((out / RAY_FOLDER).resolve()), verbose=1),
    )
    results = tuner.fit()
    rows = {}
    for result in results:
        name = result.config["run"]
        rows[name] = trial_row(name, result.metrics or {}, result.error, Path(jobs[name][0].out))
    return rows


def _scheduler(execution: Execution, pending: list[tuple[str, TrainConfig]]):
    """ASHA over epochs (a trial's report count), or None."""
    if not execution.asha:
        return None
    from ray.tune.schedulers import ASHAScheduler

    epochs = max(config.epochs for _, config in pending)
    iterations = max(config.epochs * config.folds for _, config in pending) + 1  # + the final report
    grace = execution.asha_grace or max(1, epochs // 4)
    return ASHAScheduler(time_attr="training_iteration", max_t=iterations, grace_period=grace, reduction_factor=3)


class _Stopped(BaseException):
    """Ray ended the trial's reporting (ASHA stopped it): not a failure of the run, so not an Exception."""


def _trial(trial_config: dict, jobs: dict) -> None:
    """One Ray trial: train the run named in `trial_config` and report its epochs, then its summary row."""
    from ray import tune

    name = trial_config["run"]
    config, resume = jobs[name]

    def report(fold: int, epoch: int, median: float) -> None:
        try:
            tune.report({METRIC: median, "fold": fold, "epoch": epoch})
        except Exception as err:
            raise _Stopped() from err

    try:
        row = run_one(config, name, resume, on_epoch=report)
    except _Stopped:
        return
    median = row["val_median_mm"]
    tune.report({**row, METRIC: math.inf if median is None else median, "finished": True})


def trial_row(name: str, metrics: dict, error, run: Path) -> dict:
    """The summary row of a finished trial: its last report; a trial that raised is failed; one without its final
    report was stopped by the scheduler (``stopped.json`` is written into its run folder)."""
    if error is not None:
        return failed_row(name, error)
    if metrics.get("finished"):
        keys = ("status", "val_median_mm", "oof_median_mm", "run", "error")
        row = {key: metrics.get(key) for key in keys}
        return {**row, "val_median_mm": None if row["status"] != "ok" else row["val_median_mm"]}
    record = {"epochs": metrics.get("training_iteration"), "val_median_mm": metrics.get(METRIC)}
    run.mkdir(parents=True, exist_ok=True)
    (run / STOPPED).write_text(json.dumps(record) + "\n", encoding="utf-8")
    return stopped_row(name, record)
