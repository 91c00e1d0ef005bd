"""What every notebook does first: resolve its parameters into paths and make sure the data exist.

A notebook's tagged ``parameters`` cell holds flat values (profile, data root, seed, output
folders); papermill overrides them. ``setup`` turns them into a :class:`NotebookContext`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import config

@dataclass(frozen=True)
class NotebookContext:
    """Resolved notebook parameters."""

    profile: str
    seed: int
    data_root: Path
    figures_dir: Path
    reports_dir: Path
    real_root: Path | None
    synthetic: bool
    overrides: dict = field(default_factory=dict)
    seeds: int = 1

    def settings(self):
        """The profile's settings with this run's overrides (:func:`rxlib.profiles.settings`)."""
        from .profiles import settings

        return settings(self.profile, self.overrides)

    @property
    def device(self) -> str:
        """The configured ``train.device``: where the notebooks' passes after training run (their models
        stay on the CPU between passes; :func:`rxlib.train.loop.on_device`)."""
        return str(self.settings().train.get("device", "cpu"))

    def model(self, name: str, *, progress: bool = False):
        """Model ``name`` of :data:`rxlib.plan.MODELS` (``"main"``, ``"cheating"``, ...), trained or loaded."""
        from .plan import train_model

        return train_model(self.settings(), name, self.data_root, progress=progress)

    def models(self, notebook: str, *, progress: bool = False) -> dict:
        """Every model ``notebook`` (``"04"``) asks for, ``{label: TrainedModel}`` (:func:`rxlib.plan.notebook_models`);
        the models of a comparison are checked to be different models."""
        from .plan import notebook_models

        return notebook_models(self.settings(), notebook, self.data_root, progress=progress)

    def budget_note(self) -> str:
        """What the comparison budget leaves out ("" if nothing), for figure captions."""
        from .plan import budget_note

        return budget_note(self.settings())

    def mode_statement(self) -> str:
        """Which mode this notebook runs in, truth available or not, and what that mode can claim."""
        if self.synthetic:
            return (f"Mode: synthetic ground truth available ({self.data_root / 'truth'}): cell masks and the "
                    "channels each class changes are known, so Grad-CAMO uses the true cell masks and the channel "
                    "importances are scored against the planted ones.")
        return (f"Mode: no synthetic ground truth under {self.data_root} (real or truth-less data): Grad-CAMO uses "
                "the package's segmentation (rxlib.explain.segment_cells: nuclei from w1 grown into cells) and channel "
                "importances are reported but not scored, so no claim about recovering planted cells or channels "
                "is made here; accuracies, curves, embeddings and filters are computed as on any data.")

    def pooled(self, notebook: str, verdicts) -> list:
        """``verdicts`` of this seed pooled with the same claims of the run's other seeds (with ``seeds`` > 1;
        :func:`rxlib.explain.seeds.pool_verdicts`), read from their reports folders
        (:func:`rxlib.explain.seeds.seed_reports_dir`); unchanged with one seed.

        Raises:
            FileNotFoundError: another seed's verdicts of ``notebook`` are missing (one line: the file and
                the command that writes it).
        """
        from .explain.seeds import pool_verdicts, read_samples, samples_path, seed_list, seed_reports_dir
        from .explain.verdicts import Verdict

        verdicts = [verdicts] if isinstance(verdicts, Verdict) else list(verdicts)
        by_seed = {self.seed: verdicts}
        claims = {v.claim for v in verdicts}
        for seed in seed_list(self.seed, self.seeds)[1:]:
            path = samples_path(seed_reports_dir(self.reports_dir, seed), notebook)
            if not path.is_file():
                raise FileNotFoundError(f"seed {seed}'s verdicts of {notebook} are missing ({path}); rxlib reproduce "
                                        f"--seeds {self.seeds} runs the extra seeds first, or set seeds = 1")
            by_seed[seed] = [v for v in read_samples(path, expect=self.run_identity()) if v.claim in claims]
        return pool_verdicts(by_seed)

    def run_identity(self) -> dict:
        """What the seeds of one run share, kept with each seed's samples and checked before pooling: the
        profile and the settings (``train.seed`` aside, which differs by seed)."""
        return {"profile": self.profile,
                "settings": json.dumps({k: v for k, v in self.overrides.items() if k != "train.seed"}, sort_keys=True)}

    def show_verdicts(self, notebook: str, *groups) -> None:
        """The one place a notebook presents its verdicts: pool them with the run's other seeds
        (:meth:`pooled`), keep this seed's measurements (:func:`rxlib.explain.seeds.write_samples`),
        display the brief table (:func:`rxlib.explain.verdicts.verdicts_table`), print each one's
        sentence, and merge them into ``verdicts.csv`` of this run's reports folder
        (:func:`rxlib.explain.verdicts.write_verdicts`, which replaces the notebook's earlier rows: pass
        all of its verdicts at once).

        Args:
            notebook: the notebook's name, e.g. ``'07_gradcam'``.
            groups: verdicts, or lists of verdicts (one per claim cell), in the order shown.
        """
        from IPython.display import display

        from .explain.seeds import write_samples
        from .explain.verdicts import Verdict, verdicts_table, write_verdicts

        verdicts = [v for group in groups for v in ([group] if isinstance(group, Verdict) else group)]
        pooled = self.pooled(notebook, verdicts)  # a claim shown twice: one line from pool_verdicts, before any write
        write_samples(verdicts, self.reports_dir, notebook, run=self.run_identity())
        display(verdicts_table(pooled, brief=True))
        for verdict in pooled:
            print(verdict.sentence())
        write_verdicts(pooled, self.reports_dir / "verdicts.csv", notebook=notebook)

    def caption(self, title: str) -> str:
        """``title`` with the comparison budget appended in parentheses when there is one."""
        note = self.budget_note()
        return f"{title} ({note})" if note else title


def setup(profile: str = "smoke", data_root: str = "", seed: int = 0, figures_dir: str = "",
          reports_dir: str = "", real_root: str = "", overrides: str = "", seeds: int = 1) -> NotebookContext:
    """Resolve a notebook's parameters; generate the synthetic data set of the profile if needed; set
    torch's CPU threads to :func:`rxlib.profiles.cpu_threads` (one, unless ``RXLIB_TRAIN_THREADS`` says
    otherwise: the same floats on any machine, and no spin-waiting threads on a busy one).

    Args:
        data_root: a data root; "" means ``RXLIB_DATA`` if set, else the synthetic set of
            ``profile`` and ``seed`` (generated once, in :func:`rxlib.config.synthetic_root`; see
            :func:`rxlib.data.roots.resolve_data_root`).
        real_root: the real RxRx1 pieces in the Kaggle 2023 layout; "" means
            ``<shared>/kaggle-2023`` when present, else None (:func:`rxlib.data.roots.resolve_real_root`).
        overrides: settings over the profile's as a JSON object (``'{"train.epochs": 2}'``; "" for none),
            checked here (see :func:`rxlib.profiles.settings`); ``rxlib reproduce --set`` fills it.
        seeds: how many seeds the verdicts pool (``seed`` and the ones after it; :mod:`rxlib.explain.seeds`);
            ``rxlib reproduce --seeds N`` runs the others first.
    """
    import pandas as pd

    from .data.roots import resolve_data_root, resolve_real_root

    pd.set_option("display.max_columns", None)  # wide tables shown whole (report outputs scroll sideways)
    from .profiles import PROFILES, configure_threads, parse_overrides, settings

    configure_threads()
    from .explain.seeds import seed_list

    seed_list(seed, seeds)  # seeds below 1: one line now
    parsed = parse_overrides(overrides)
    if profile in PROFILES or parsed:
        settings(profile, parsed)  # an unknown key or a bad value: one line now, not a traceback in training

    root = resolve_data_root(profile, seed, data_root or None)
    return NotebookContext(
        profile=profile, seed=seed, data_root=Path(root),
        figures_dir=Path(figures_dir) if figures_dir else config.figures_dir(),
        reports_dir=Path(reports_dir) if reports_dir else config.reports_dir(),
        real_root=resolve_real_root(real_root or None),
        synthetic=(Path(root) / "truth" / "classes.csv").is_file(),
        overrides=parsed,
        seeds=int(seeds),
    )
