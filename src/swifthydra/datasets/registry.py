"""Registry of the ADBench datasets: names, aliases, sizes and checksums.

ADBench (Han et al., NeurIPS 2022) publishes 47 classical tabular datasets and embedding versions
of 10 CV/NLP datasets. Classical datasets are named like their files (``6_cardio``) and can be
asked for by a short, case-insensitive alias (``cardio``). An embedding set is named
``<folder>/<file>`` (``CV_by_ResNet18/CIFAR10_0``); its alias without the folder
(``cifar10_0``) means the embedding ADBench uses by default (ResNet-18 for images, BERT for text),
and ``cifar10_0-vit`` / ``20news_0-roberta`` ask for the other one.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from swifthydra.exceptions import UnknownDatasetError


@dataclass(frozen=True)
class DatasetInfo:
    """One ADBench dataset."""

    name: str  #: canonical name, e.g. ``"6_cardio"`` or ``"CV_by_ResNet18/CIFAR10_0"``
    group: str  #: ``"classical"``, ``"cv"`` or ``"nlp"``
    folder: str  #: folder in ADBench's repository, e.g. ``"Classical"``
    file: str  #: file name, e.g. ``"6_cardio.npz"``
    rows: int | None  #: number of rows, when published
    features: int | None  #: number of features, when published
    anomalies: int | None  #: number of anomalies, when published
    domain: str  #: application domain as ADBench lists it
    sha256: str | None = None  #: SHA-256 of the file, when known

    @property
    def anomaly_ratio(self) -> float | None:
        if self.rows and self.anomalies is not None:
            return self.anomalies / self.rows
        return None

    @property
    def short(self) -> str:
        """The short alias: ``cardio`` for ``6_cardio``, ``cifar10_0`` for the ResNet-18 CIFAR10_0."""
        stem = self.file[: -len(".npz")]
        if self.group == "classical":
            return stem.split("_", 1)[1].lower()
        alias = stem.lower()
        if self.folder in ("CV_by_ViT", "NLP_by_RoBERTa"):
            alias += "-" + self.folder.split("_by_")[1].lower()
        return alias


# (file stem, rows, features, anomalies, domain) as in ADBench's dataset table.
_CLASSICAL = [
    ("1_ALOI", 49534, 27, 1508, "Image"),
    ("2_annthyroid", 7200, 6, 534, "Healthcare"),
    ("3_backdoor", 95329, 196, 2329, "Network"),
    ("4_breastw", 683, 9, 239, "Healthcare"),
    ("5_campaign", 41188, 62, 4640, "Finance"),
    ("6_cardio", 1831, 21, 176, "Healthcare"),
    ("7_Cardiotocography", 2114, 21, 466, "Healthcare"),
    ("8_celeba", 202599, 39, 4547, "Image"),
    ("9_census", 299285, 500, 18568, "Sociology"),
    ("10_cover", 286048, 10, 2747, "Botany"),
    ("11_donors", 619326, 10, 36710, "Sociology"),
    ("12_fault", 1941, 27, 673, "Physical"),
    ("13_fraud", 284807, 29, 492, "Finance"),
    ("14_glass", 214, 7, 9, "Forensic"),
    ("15_Hepatitis", 80, 19, 13, "Healthcare"),
    ("16_http", 567498, 3, 2211, "Web"),
    ("17_InternetAds", 1966, 1555, 368, "Image"),
    ("18_Ionosphere", 351, 32, 126, "Oryctognosy"),
    ("19_landsat", 6435, 36, 1333, "Astronautics"),
    ("20_letter", 1600, 32, 100, "Image"),
    ("21_Lymphography", 148, 18, 6, "Healthcare"),
    ("22_magic.gamma", 19020, 10, 6688, "Physical"),
    ("23_mammography", 11183, 6, 260, "Healthcare"),
    ("24_mnist", 7603, 100, 700, "Image"),
    ("25_musk", 3062, 166, 97, "Chemistry"),
    ("26_optdigits", 5216, 64, 150, "Image"),
    ("27_PageBlocks", 5393, 10, 510, "Document"),
    ("28_pendigits", 6870, 16, 156, "Image"),
    ("29_Pima", 768, 8, 268, "Healthcare"),
    ("30_satellite", 6435, 36, 2036, "Astronautics"),
    ("31_satimage-2", 5803, 36, 71, "Astronautics"),
    ("32_shuttle", 49097, 9, 3511, "Astronautics"),
    ("33_skin", 245057, 3, 50859, "Image"),
    ("34_smtp", 95156, 3, 30, "Web"),
    ("35_SpamBase", 4207, 57, 1679, "Document"),
    ("36_speech", 3686, 400, 61, "Linguistics"),
    ("37_Stamps", 340, 9, 31, "Document"),
    ("38_thyroid", 3772, 6, 93, "Healthcare"),
    ("39_vertebral", 240, 6, 30, "Biology"),
    ("40_vowels", 1456, 12, 50, "Linguistics"),
    ("41_Waveform", 3443, 21, 100, "Physics"),
    ("42_WBC", 223, 9, 10, "Healthcare"),
    ("43_WDBC", 367, 30, 10, "Healthcare"),
    ("44_Wilt", 4819, 5, 257, "Botany"),
    ("45_wine", 129, 13, 10, "Chemistry"),
    ("46_WPBC", 198, 33, 47, "Healthcare"),
    ("47_yeast", 1484, 8, 507, "Biology"),
]

# SHA-256 of the files as published (checked against the copies in ADBench's repository).
_SHA256 = {
    "10_cover": "945a097c3542ae81a551bf1c06dcad78a755d94f84fcaf1d60687e42d1a656df",
    "11_donors": "5824ec854465f2763b4bfe3da1ae9f25ed5433b5c6e265d42e37da4f82a58679",
    "14_glass": "aa7a8db1d475ba01a10488af454bc15220a3d5951b010b03b7020567d8152cdc",
    "16_http": "9d98710091551587f4740cfc851a6b064fff6319a337c2dc77ee6da4bcc2e02c",
    "17_InternetAds": "bdd8ad5cf5bf2cb96cba53dde30d522d0f6a279083a8e2bc7efbac5981b04385",
    "18_Ionosphere": "bca46cb0cfd1bf9ddef6cde5ad2215d54fb0189508d0d4c4eb98e788cad69001",
    "19_landsat": "ba17e2158c07469597b89db49d3982c874c6b713ff6670721ddc88969da77987",
    "20_letter": "f986d3da80cf1fa2aea83a5ebe73b7d4800e0d4c01fdd1ae074b58d20f10d039",
    "21_Lymphography": "dad977b04f4ea65b78ccd0e9f76b45175bad605165b37e63f3cc177845e67037",
    "22_magic.gamma": "0be375984d7af9ea7a63b12206c240840d8b7daa3607021c5fb8756407dd86f1",
    "24_mnist": "be7706272325fdd3592c1be555ae1a82f916a2f8545f4f8cbaa548ab102cc44c",
    "26_optdigits": "60de17a375a278ba220a7849727d998aa02b5e2f9fd17732a004bba28de4656e",
    "27_PageBlocks": "10a9b4d5bb5d3b9083caab4c4062f665610eada703c3d927bf7c34b1f2d0d223",
    "28_pendigits": "c4936b89dcdad59d303020e492f763a0f54170080d787c77497609acbb9c2d79",
    "29_Pima": "215454bb263a2f040945c9ea7bd7f06f1e89a61a3143bdb6f196e3887e801a7d",
    "2_annthyroid": "e738f7c58a8740d2c4aac4c71ff49ce5e1d1aa16f44178135fc9c09df05fad1b",
    "30_satellite": "1f048f5686f1b8c16a227fdfa3c81a62cd9a92715714a6b24c69b1c5ad96b46e",
    "31_satimage-2": "1b056e357f801b8b20c3f380a30224a3c4088d7ed764ec5a24828dc9b1918d6f",
    "32_shuttle": "26900b0f6be45d9ddb7a402c9b2f956ceda42d23a8ca4cf4406b8bc1352823d1",
    "33_skin": "d02aa01ffc1b6bf2b8b1ac250c90e8a8eacd0cefc962940ed5cc4bf5deac9c95",
    "34_smtp": "d2569fc9bc12115419e3f5b37d19921e10e6c26e5ad1e61064cfb0fbc402dfdd",
    "35_SpamBase": "d0c46c7928e43f6496bcd06e09de0b70f6bc8143792dfa0a43f450263d254e9b",
    "37_Stamps": "99fe739447284f613fa54bf2dccdb51c5120175ce6260adec6dad77576c42509",
    "38_thyroid": "8de161b3f235b7647bb0b39a836d983ff61d67bf234edac461da2d71e889cb87",
    "39_vertebral": "0816286f92b96fe6867664a41a031ac7228dcfbf1a5feefe50ca3883b2e9073d",
    "42_WBC": "650f9dcb129248f67a291be0974f533ef259fcbde50fce5c8ad2a1cb2652d03b",
    "43_WDBC": "78d4606a1ab516f5b60b00c196497f3bbd6bd5e4548fd04cf5f2475209b34b85",
    "45_wine": "d5ad8965d92cc57122fe1e6572bb301adbaf795b3e166d187ae00a704d8f6e20",
    "4_breastw": "4f37ce07dbc25ddad8178fdc6d664ab46d2d0000ee28c2787c3c7ff3c03ef9f6",
    "7_Cardiotocography": "5ae84910430f05923e11b6f537243263977c9136949dabd891e3570aeec51e29",
    "8_celeba": "1cadfdea14cd8d240eca715a70c09c88af8621d086a7478c63f602d97adef0b5",
}

# Embedding sets: (file stems, rows, anomalies) per family; None where ADBench gives no single size.
_MNIST_C = [
    "brightness", "canny_edges", "dotted_line", "fog", "glass_blur", "identity", "impulse_noise",
    "motion_blur", "rotate", "scale", "shear", "shot_noise", "spatter", "stripe", "translate",
    "zigzag",
]
_MVTEC = [
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
    "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
]
_CV_FAMILIES = [
    ([f"CIFAR10_{i}" for i in range(10)], 5263, 263),
    ([f"FashionMNIST_{i}" for i in range(10)], 6315, 315),
    ([f"MNIST-C_{c}" for c in _MNIST_C], 10000, 500),
    ([f"MVTec-AD_{c}" for c in _MVTEC], None, None),
    ([f"SVHN_{i}" for i in range(10)], 5208, 260),
]
_NLP_FAMILIES = [
    ([f"20news_{i}" for i in range(6)], None, None),
    ([f"agnews_{i}" for i in range(4)], 10000, 500),
    (["amazon"], 10000, 500),
    (["imdb"], 10000, 500),
    (["yelp"], 10000, 500),
]
# Embedding folder -> (group, embedding width when published, domain)
_EMBEDDINGS = {
    "CV_by_ResNet18": ("cv", 512, "Image"),
    "CV_by_ViT": ("cv", None, "Image"),
    "NLP_by_BERT": ("nlp", 768, "NLP"),
    "NLP_by_RoBERTa": ("nlp", 768, "NLP"),
}


def _build() -> list[DatasetInfo]:
    out = [
        DatasetInfo(stem, "classical", "Classical", f"{stem}.npz", rows, feats, anom, dom, _SHA256.get(stem))
        for stem, rows, feats, anom, dom in _CLASSICAL
    ]
    for folder, (group, width, domain) in _EMBEDDINGS.items():
        families = _CV_FAMILIES if group == "cv" else _NLP_FAMILIES
        for stems, rows, anomalies in families:
            for stem in stems:
                out.append(
                    DatasetInfo(f"{folder}/{stem}", group, folder, f"{stem}.npz", rows, width, anomalies, domain)
                )
    return out


DATASETS: tuple[DatasetInfo, ...] = tuple(_build())
_BY_NAME = {d.name: d for d in DATASETS}
_BY_KEY: dict[str, DatasetInfo] = {}
for _d in DATASETS:
    for _key in (_d.name.lower(), _d.short, _d.file[: -len(".npz")].lower() if _d.group == "classical" else None):
        if _key and _key not in _BY_KEY:
            _BY_KEY[_key] = _d


def get_dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset by canonical name or alias (case-insensitive).

    Raises
    ------
    UnknownDatasetError
        When the name is not known; the message lists close matches.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnknownDatasetError(f"dataset name must be a non-empty string, got {name!r}.")
    key = name.strip().lower()
    if key.endswith(".npz"):
        key = key[: -len(".npz")]
    if key in _BY_KEY:
        return _BY_KEY[key]
    close = difflib.get_close_matches(key, list(_BY_KEY), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownDatasetError(
        f"unknown dataset {name!r}.{hint} Run `swifthydra datasets list` for all names."
    )


def list_datasets(group: str | None = None):
    """Return the registry as a pandas DataFrame (one row per dataset).

    Parameters
    ----------
    group : {"classical", "cv", "nlp"}, optional
        Only this group.
    """
    import pandas as pd

    if group is not None and group not in ("classical", "cv", "nlp"):
        from swifthydra.exceptions import InvalidInputError

        raise InvalidInputError(f"unknown group {group!r}: choose classical, cv or nlp.")
    rows = [
        {
            "name": d.name,
            "alias": d.short,
            "group": d.group,
            "rows": d.rows,
            "features": d.features,
            "anomalies": d.anomalies,
            "anomaly_ratio": d.anomaly_ratio,
            "domain": d.domain,
            "sha256": d.sha256,
        }
        for d in DATASETS
        if group is None or d.group == group
    ]
    df = pd.DataFrame(rows)
    for col in ("rows", "features", "anomalies"):
        df[col] = df[col].astype("Int64")
    return df
