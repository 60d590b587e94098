"""The papers as lists of studies: which sweep, with which flags, decides which claims of which figure.

``python -m spec_ray reproduce PAPER`` (``sweeps.reproduce``) plans, runs and reports a paper from
these. A study runs one sweep script under its own experiment name in the paper's folder of the
storage root; ``here`` says whether a CPU can run it at all, and what it needs where it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Study:
    """One experiment of a paper: a sweep script with its flags, and what of the paper it reproduces."""

    name: str
    """The experiment's folder under ``<storage>/<paper>/``."""
    script: str
    """The sweep module in ``sweeps/`` (``polarity`` for sweeps/polarity.py)."""
    args: tuple[str, ...]
    """The flags that select the study from the script's experiment (variants, one multi)."""
    figures: str
    """The paper's figures and section, as the page titles them."""
    shows: str
    """What the paper shows there, in our words."""
    claims: tuple[int, ...]
    """The claims (``analysis``'s numbers) the study decides."""
    min_seeds: int
    """The fewest seeds those claims need (their ``ClaimCheck.seeds``)."""
    shown: tuple[str, ...] = ()
    """The figures (``analysis``'s names) the paper's page shows for it; its own report has every one."""
    judged_with: tuple[str, ...] = ()
    """Other studies of the paper whose runs its figures and claims read beside its own (claim 9 compares the
    small FC teacher with the large one)."""
    here: bool = True
    """Whether a CPU machine can run it; False: named with its cost and ``needs``, never planned."""
    needs: str = ""
    """Where it fits, for a study not run here (a GPU, an image set to download)."""

    def command(self, storage: str, paper: str) -> str:
        """The sweep command that runs the study at the paper's size."""
        return " ".join(["python", f"sweeps/{self.script}.py", *self.args, "--name", self.name, "--storage",
                         f"{storage.rstrip('/')}/{paper}"])  # fmt: skip


@dataclass(frozen=True)
class PaperStudies:
    """A paper: its command-line name, title and studies in its figures' order."""

    key: str
    """``reproduce``'s PAPER argument and the folder under the storage root."""
    title: str
    studies: tuple[Study, ...]
    report: str
    """The name of its figures and claims in ``analysis.report.PAPERS``."""


ICML2020 = PaperStudies(
    key="icml2020",
    title="Tian, Student Specialization in Deep Rectified Networks With Finite Width and Input Dimension (ICML 2020)",
    report="ICML 2020 (Student Specialization)",
    studies=(
        Study(
            "overrealization",
            "overrealization",
            (),
            "Fig. 5 (sec. 7)",
            "A two-layer student of 1x-10x the teacher's 10 nodes: after training, every student node is either "
            "specialized (its correlation with its best teacher node near 1) with a large fan-out norm, or "
            "unspecialized with a fan-out norm near zero, an L-shape (Theorem 2). Higher polarity p leaves more "
            "teacher nodes unrecovered, mostly without over-realization.",
            (1, 2, 3, 4),
            3,
            shown=("lshape",),
        ),
        Study(
            "polarity",
            "polarity",
            (),
            "Figs. 7, 8 (sec. 7)",
            "The 20 teacher nodes' success rates over seeds, strongest first: strong nodes are recovered nearly "
            "always and early, weak ones late or never, the more so the larger p; more over-realization "
            "recovers more. Figure 8 follows each teacher node's best correlation over iterations.",
            (1, 2, 3, 4),
            3,
            shown=("success_rate", "dynamics", "loss_curves"),
        ),
        Study(
            "sample_size",
            "sample_size",
            (),
            "Fig. 6 (sec. 7)",
            "A 4-layer teacher (50-75-100-125) and a 2x student: with more training samples rho_mean rises and "
            "the evaluation loss falls, for MSE and cross-entropy, and the lowest layer specializes best.",
            (5,),
            2,
            shown=("sample_size",),
        ),
        Study(
            "teacher_aware",
            "teacher_aware",
            (),
            "Fig. 9 (sec. 7)",
            "Training sets drawn near the teacher's boundaries (teacher-aware) against plain Gaussian ones of the "
            "same size: both reach a low training loss, but with few samples the teacher-aware set gives a far "
            "lower evaluation loss.",
            (6,),
            2,
            shown=("teacher_aware",),
        ),
        Study(
            "cifar_digits",
            "cifar",
            ("--dataset", "digits"),
            "Fig. 10 (sec. 7), on digits",
            "A ConvNet teacher pretrained on real images and pruned to its strong channels; students 1x-10x "
            "over-realized: more over-realization gives better specialization in every layer and higher test "
            "accuracy. The paper uses CIFAR-10; here scikit-learn's 8x8 digits, which need no download.",
            (13,),
            3,
            shown=("real_data",),
        ),
        Study(
            "cifar10",
            "cifar",
            ("--dataset", "cifar10", "--data-dir", "DATA"),
            "Fig. 10 (sec. 7), CIFAR-10",
            "Figure 10 on CIFAR-10 itself, as the paper runs it.",
            (13,),
            3,
            here=False,
            needs="CIFAR-10's files (python -m spec_ray download cifar10 --data-dir DATA) and a GPU "
            "(--gpus-per-trial 1)",
        ),
    ),
)

LUCK_MATTERS = PaperStudies(
    key="luck-matters",
    title="Tian, Jiang, Gong, Morcos: Luck Matters: Understanding Training Dynamics of Deep ReLU Networks",
    report="Luck Matters",
    studies=(
        Study(
            "luck_fc_small",
            "luck_matters",
            ("--net", "fc-small", "--data", "finite", "infinite"),
            "Figs. 5, 15-20 (secs. 6-7), small FC on Gaussian data",
            "rho-bar, the mean over teacher nodes of their best student's correlation, grows in every layer, "
            "the lowest layer best; the students that win in the end were lucky at initialization (a low rank "
            "among all students); finite data stalls below infinite data; under BatchNorm each node's incoming "
            "weight norm is conserved; beta* and H* concentrate on the winners (fig. 16).",
            (7, 8, 10, 11, 12),  # 9 in the large FC's study: it needs both sizes
            2,
            shown=("luck_rho", "luck_rank", "luck_data", "luck_beta"),
        ),
        Study(
            "luck_digits",
            "luck_matters",
            ("--dataset", "digits", "--net", "fc-small", "fc-large"),
            "Fig. 6 and figs. 17-18 right (sec. 7), on digits",
            "The same measures on a teacher pretrained on real images: BatchNorm lowers the final winners' rank. "
            "The paper uses CIFAR-10; here scikit-learn's 8x8 digits.",
            (14,),
            2,
            shown=("luck_rho", "luck_rank"),
        ),
        Study(
            "teacher_bn",
            "cifar",
            ("--dataset", "digits", "--multi", "1", "--seeds", "1"),
            "Figs. 4, 14 (sec. 3.1), on digits",
            "The BatchNorm biases of a pre-trained network are mostly negative. The paper reads VGG11/16 on "
            "ImageNet (python -m analysis bn-bias vgg16_bn); here the ConvNet teacher pretrained on digits, "
            "BN before the ReLU.",
            (15,),
            1,
            shown=("bn_bias",),
        ),
        Study(
            "luck_fc_large",
            "luck_matters",
            ("--net", "fc-large", "--data", "finite"),
            "Figs. 15a, 19 (secs. 6-8), large FC on Gaussian data",
            "The large FC teacher (50-75-100-125) beside the small one: rho-bar converges much more slowly, and "
            "BatchNorm helps the large model while it does not help the small one.",
            (9,),
            2,
            shown=("luck_size", "luck_rho"),
            judged_with=("luck_fc_small",),
        ),
        Study(
            "luck_cnn_narrow",
            "luck_matters",
            ("--net", "cnn-narrow", "--data", "finite", "infinite"),
            "Figs. 5, 17-18, 20 (secs. 6-7), CNN at an eighth of its width",
            "The CNN teacher's measures, at an eighth of the paper's channels.",
            (7, 8, 9, 10),
            2,
            shown=("luck_rho", "luck_rank"),
        ),
        Study(
            "luck_cnn",
            "luck_matters",
            ("--net", "cnn", "--data", "finite", "infinite"),
            "Figs. 5, 17-18, 20 (secs. 6-7), CNN",
            "The CNN with the paper's 640-channel student.",
            (7, 8, 9, 10),
            2,
            here=False,
            needs="a GPU (--gpus-per-trial 1)",
        ),
        Study(
            "luck_cifar10",
            "luck_matters",
            ("--dataset", "cifar10", "--data-dir", "DATA"),
            "Fig. 6 (sec. 7), CIFAR-10",
            "Figure 6 on CIFAR-10 itself.",
            (14,),
            2,
            here=False,
            needs="CIFAR-10's files (python -m spec_ray download cifar10 --data-dir DATA) and a GPU "
            "(--gpus-per-trial 1)",
        ),
    ),
)

PAPERS = {p.key: p for p in (ICML2020, LUCK_MATTERS)}
"""Every paper ``reproduce`` knows; ``all`` runs them in this order."""
