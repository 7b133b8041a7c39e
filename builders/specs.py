"""The five MAMDR benchmarks as data: domains in the order that fixes their ids, and the
per-domain CTR ratios the paper published (Tables II-IV).

The ratios are what Python's `random.seed(123); round(random.uniform(0.2, 0.5), 2)` gives,
drawn once per domain and restarting for every dataset (benchmark-spec.md). They are
pinned here as data, not recomputed, and a test checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mdrbench.registry import Registry

# 2.0: the authors' split (positives of a domain once, negatives user by user, sklearn's
# sizes) and Taobao themes numbered before the embedding filter; 1.x: one stratified 60/20/20
# split per domain, themes numbered after the filter. Builds of different major versions
# hold different rows: results on them are never compared (mdrbench/validate.py).
SPEC_VERSION = "2.0"
# Why builds of a major version are not comparable with the one before (validate says it).
SPEC_CHANGES = {
    "2": "spec 2.0 splits each domain's positives once and each user's negatives on their "
    "own with sklearn's sizes (the authors' dataset/*/split.py), where 1.x made one "
    "stratified 60/20/20 split per domain, and numbers Taobao themes before dropping rows "
    "without embeddings (dataset/Taobao/preprocess_data.py), so a 1.x build holds other "
    "train/val/test rows (and for Taobao possibly other themes)",
}


def spec_major(version: str) -> str:
    """'2.0' -> '2'. Builds of one major version hold the same rows for the same raw files
    and seed; a new major version changes them, so results across majors are not comparable."""
    return str(version).split(".", 1)[0]

# The Hub home of the published builds: one dataset repository holding every benchmark under
# data/<name>/ (the layout `mdrbench publish` writes), pinned to the tag of this spec version
# (`mdrbench publish --tag`), so `mdrbench download NAME` and `mdrbench.load_dataset(NAME)`
# always fetch the build of the spec this mdrbench implements, checksums verified.
HUB_REPO = "mdrbench/mdr-benchmarks"
HUB_REVISION = f"spec-{SPEC_VERSION}"

PAPER_CTR_RATIOS = (
    0.22, 0.23, 0.32, 0.23, 0.47, 0.21, 0.36, 0.30, 0.46, 0.25, 0.30, 0.30, 0.27, 0.20, 0.33,
    0.23, 0.38, 0.22, 0.29, 0.33, 0.47, 0.23, 0.24, 0.44, 0.21, 0.47, 0.37, 0.28, 0.45, 0.43,
)  # fmt: skip

AMAZON_13 = (
    "Arts Crafts and Sewing", "Digital Music", "Gift Cards", "Industrial and Scientific",
    "Luxury Beauty", "Magazine Subscriptions", "Musical Instruments", "Office Products",
    "Patio Lawn and Garden", "Prime Pantry", "Software", "Toys and Games", "Video Games",
)  # fmt: skip
AMAZON_6 = (
    "Musical Instruments", "Office Products", "Patio Lawn and Garden", "Prime Pantry",
    "Toys and Games", "Video Games",
)  # fmt: skip

AMAZON_URL = "http://deepyeti.ucsd.edu/jianmo/amazon/categoryFilesSmall/"
AMAZON_MIRROR = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/categoryFilesSmall/"
# Sizes and sha256 of the original Amazon 2018 files known byte for byte (the copies in
# ../shared/data/amazon2018, see its SOURCES.md; original gzip headers). A download of one
# of these must match; a local file that does not is reported as not the original.
AMAZON_KNOWN_FILES: dict[str, tuple[int, str]] = {
    "Gift_Cards_5.json.gz": (
        176952, "41e1f0e50d3c1c9d7d949fb6315944c8bde51ea6b7429a29fdd0d02cbc07ef25"),
    "AMAZON_FASHION_5.json.gz": (
        287013, "5c73b65d0a5cc5dcd905b75a87086c37513ff0d023b02b381e729ab8a9541cb6"),
    "All_Beauty_5.json.gz": (
        633507, "4a6b1eb40c4f58328f3f34181a6ef00f8e3423d801128617cc408a83c9bd0027"),
    "Appliances_5.json.gz": (
        72998, "19f1f164e7c41e5bc43c1826ddbd1ae702511be9d2870c0fa04052407ac41fa3"),
}  # fmt: skip
TAOBAO_PAGE = "https://tianchi.aliyun.com/dataset/9716"

MAMDR_CITATION = """@inproceedings{luo2023mamdr,
  title     = {MAMDR: A Model Agnostic Learning Framework for Multi-Domain Recommendation},
  author    = {Luo, Linhao and Li, Yumeng and Gao, Buyu and Tang, Shuai and Wang, Sinan and
               Li, Jiancheng and Zhu, Tanchao and Liu, Jiancheng and Li, Zhao and Pan, Shirui},
  booktitle = {IEEE 39th International Conference on Data Engineering (ICDE)},
  year      = {2023}
}"""
AMAZON_CITATION = """@inproceedings{ni2019justifying,
  title     = {Justifying Recommendations using Distantly-Labeled Reviews and Fine-Grained Aspects},
  author    = {Ni, Jianmo and Li, Jiacheng and McAuley, Julian},
  booktitle = {EMNLP-IJCNLP},
  year      = {2019}
}"""
TAOBAO_CITATION = """@inproceedings{du2019sequential,
  title     = {Sequential Scenario-Specific Meta Learner for Online Recommendation},
  author    = {Du, Zhengxiao and Wang, Xiaowei and Yang, Hongxia and Zhou, Jingren and Tang, Jie},
  booktitle = {KDD},
  year      = {2019}
}
Taobao Cloud Theme Click Dataset, Tianchi dataset 9716, https://tianchi.aliyun.com/dataset/9716"""

AMAZON_LICENCE = (
    "Amazon Review Data (2018), Ni, Li and McAuley: released for research use without a "
    "formal licence; cite the EMNLP 2019 paper."
)
TAOBAO_LICENCE = (
    "Taobao Cloud Theme Click Dataset (Tianchi 9716): distributed by Alibaba Tianchi under its "
    "terms of use after login; research use, redistribution only as those terms allow."
)


@dataclass(frozen=True)
class DomainSpec:
    name: str
    ctr_ratio: float


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "amazon" or "taobao"
    domains: tuple[DomainSpec, ...]
    version: str = SPEC_VERSION
    description: str = ""
    extra: dict = field(default_factory=dict)
    hub_repo: str = HUB_REPO  # Hub dataset repository of the published build
    hub_revision: str = HUB_REVISION  # its pinned revision (a tag or commit)
    # The field's datasets (builders/field/) describe themselves on their card:
    source: str = ""  # where the raw files come from
    recipe: str = ""  # how rows, labels and fields are made (markdown list items)
    licence: str = ""  # the source's terms, as the card quotes them
    citation: str = ""  # bibtex of the source

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    def select(self, names: list[str] | None) -> tuple[DomainSpec, ...]:
        """The spec's domains restricted to `names` (spec order kept, pinned ratios kept)."""
        if not names:
            return self.domains
        from mdrbench.errors import unknown_name

        by_name = {d.name: d for d in self.domains}
        for n in names:
            if n not in by_name:
                raise unknown_name(f"domain of {self.name}", n, by_name)
        keep = set(names)
        return tuple(d for d in self.domains if d.name in keep)


def amazon_file_name(category: str) -> str:
    """'Patio Lawn and Garden' -> 'Patio_Lawn_and_Garden_5.json.gz'."""
    return category.replace(", ", "_").replace(" ", "_") + "_5.json.gz"


def taobao_domain_name(i: int) -> str:
    return f"D{i + 1}"


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _ratios(names) -> tuple[DomainSpec, ...]:
    return tuple(DomainSpec(n, r) for n, r in zip(names, PAPER_CTR_RATIOS, strict=False))


DATASETS.register(
    "amazon-6",
    DatasetSpec(
        "amazon-6", "amazon", _ratios(AMAZON_6),
        description="Six Amazon 2018 categories with abundant interactions (paper Table II).",
    ),
)  # fmt: skip
DATASETS.register(
    "amazon-13",
    DatasetSpec(
        "amazon-13", "amazon", _ratios(AMAZON_13),
        description="Amazon-6 plus seven sparse categories (paper Table III).",
    ),
)  # fmt: skip
for _n in (10, 20, 30):
    DATASETS.register(
        f"taobao-{_n}",
        DatasetSpec(
            f"taobao-{_n}", "taobao", _ratios([taobao_domain_name(i) for i in range(_n)]),
            description=f"The first {_n} themes of the Taobao Cloud Theme click log (paper Table IV).",
        ),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------
# The field's datasets (builders/field/): Scenario-Wise Rec's six, their labels their own
# (no CTR ratios). A registry of their own: DATASETS is what the paper profile, the Hub home
# and the leaderboard's paper columns are about.

FIELD_DATASETS: Registry[DatasetSpec] = Registry("dataset")

SWR_CITATION = """@article{li2024scenario,
  title   = {Scenario-Wise Rec: A Multi-Scenario Recommendation Benchmark},
  author  = {Li, Xiaopeng and Gao, Jingtong and Jia, Pengyue and Wang, Yichao and Wang, Wanyu
             and Wang, Yejing and Wang, Yuhao and Guo, Huifeng and Tang, Ruiming},
  journal = {arXiv preprint arXiv:2412.17374},
  year    = {2024}
}"""


def _register(name: str, domains, **text) -> None:
    spec = DatasetSpec(name, name, tuple(DomainSpec(d, None) for d in domains), hub_repo="",
                       hub_revision="", **text)  # fmt: skip
    FIELD_DATASETS.register(name, spec)


_register(
    "movielens-1m", ("age 1-24", "age 25-34", "age 35+"),
    description="MovieLens 1M in three domains by the user's age group (Scenario-Wise Rec).",
    source="MovieLens 1M (GroupLens, files.grouplens.org/datasets/movielens/ml-1m.zip): "
    "`users.dat`, `movies.dat`, `ratings.dat`",
    recipe="- Every rating is a sample; label 1 when the rating is above 3.\n"
    "- Domains by the user's age code: {1, 18}, {25}, {35, 45, 50, 56}.\n"
    "- Fields: gender, occupation, zip (user), the movie's first genre (item), age (user, "
    "dense).",
    licence="MovieLens 1M, GroupLens Research: research use; the data may not be "
    "redistributed without permission; cite Harper and Konstan (ACM TiIS 2015).",
    citation="""@article{harper2015movielens,
  title   = {The MovieLens Datasets: History and Context},
  author  = {Harper, F. Maxwell and Konstan, Joseph A.},
  journal = {ACM Transactions on Interactive Intelligent Systems},
  volume  = {5}, number = {4}, year = {2015}
}""",
)  # fmt: skip

_register(
    "amazon-swr", ("Beauty", "Clothing Shoes and Jewelry", "Health and Personal Care"),
    description="Three Amazon 2014 5-core categories (Scenario-Wise Rec's Amazon).",
    source="Amazon product data (2014), 5-core review files `reviews_<Category>_5.json.gz` "
    "(McAuley et al., jmcauley.ucsd.edu/data/amazon/)",
    recipe="- Every review line is a sample; label 1 when int(overall) is above 3.\n"
    "- Domains: Beauty, Clothing Shoes and Jewelry, Health and Personal Care.\n"
    "- No side fields (user and item ids only, as in Scenario-Wise Rec).",
    licence="Amazon product data (2014), McAuley et al.: released for research use without "
    "a formal licence; cite the SIGIR 2015 and WWW 2016 papers.",
    citation="""@inproceedings{he2016ups,
  title     = {Ups and Downs: Modeling the Visual Evolution of Fashion Trends with One-Class
               Collaborative Filtering},
  author    = {He, Ruining and McAuley, Julian},
  booktitle = {WWW}, year = {2016}
}
@inproceedings{mcauley2015image,
  title     = {Image-Based Recommendations on Styles and Substitutes},
  author    = {McAuley, Julian and Targett, Christopher and Shi, Qinfeng and van den Hengel, Anton},
  booktitle = {SIGIR}, year = {2015}
}""",
)  # fmt: skip

_register(
    "mind", ("news", "lifestyle", "sports", "finance"),
    description="MIND news clicks in four news-category domains (Scenario-Wise Rec's Mind).",
    source="MIND, the Microsoft News Dataset (msnews.github.io): `train/` and `dev/` "
    "`behaviors.tsv` and `news.tsv` of MINDlarge",
    recipe="- Every news shown in an impression of the train and dev logs is a sample; label "
    "its click flag.\n"
    "- Domains by the news' Category: news, lifestyle, sports, finance (other categories "
    "dropped).\n"
    "- Field: the news' SubCategory (item).",
    licence="MIND: Microsoft Research License Terms, for non-commercial research purposes "
    "only; cite Wu et al. (ACL 2020).",
    citation="""@inproceedings{wu2020mind,
  title     = {MIND: A Large-scale Dataset for News Recommendation},
  author    = {Wu, Fangzhao and Qiao, Ying and Chen, Jiun-Hung and Wu, Chuhan and Qi, Tao and
               Lian, Jianxun and Liu, Danyang and Xie, Xing and Gao, Jianfeng and Wu, Winnie
               and Zhou, Ming},
  booktitle = {ACL}, year = {2020}
}""",
)  # fmt: skip

_register(
    "douban", ("book", "music", "movie"),
    description="Douban reviews in book, music and movie domains (Scenario-Wise Rec's Douban).",
    source="Douban dataset (rating, review, side information), Kaggle fengzhujoey: "
    "`users_cleaned.txt`, `bookreviews_cleaned.txt`, `musicreviews_cleaned.txt`, "
    "`moviereviews_cleaned.txt`",
    recipe="- Every review is a sample; label 1 when the rating is above 3.\n"
    "- Domains: book, music, movie (Scenario-Wise Rec's run script's ids); items numbered "
    "per domain.\n"
    "- Fields: the user's living_place and joined-time month bin (user).",
    licence="Douban dataset on Kaggle (fengzhujoey): shared for research; terms as the "
    "Kaggle page states; cite Zhu et al. (CIKM 2019, DTCDR).",
    citation="""@inproceedings{zhu2019dtcdr,
  title     = {DTCDR: A Framework for Dual-Target Cross-Domain Recommendation},
  author    = {Zhu, Feng and Chen, Chaochao and Wang, Yan and Liu, Guanfeng and Zheng, Xiaolin},
  booktitle = {CIKM}, year = {2019}
}""",
)  # fmt: skip

_register(
    "kuairand-1k", ("tab #0", "tab #1", "tab #2", "tab #4", "tab #6"),
    description="KuaiRand-1K video clicks in five tab domains (Scenario-Wise Rec's KuaiRand).",
    source="KuaiRand-1K (kuairand.com, zenodo.org/records/10439422): "
    "`log_standard_4_22_to_5_08_1k.csv`, `user_features_1k.csv`, `video_features_basic_1k.csv`",
    recipe="- Every log row whose user and video have features is a sample; label is_click.\n"
    "- Tabs numbered by first appearance (as every column in Scenario-Wise Rec's script); "
    "domains: the tabs numbered 0, 1, 2, 4, 6 (the manifest gives each one's raw `tab`).\n"
    "- Fields: the user features (categorical; follow/fans/friend counts and register days "
    "dense, as renumbered indices like the script's) and the video's type, visible status, "
    "width and height (item).",
    licence="KuaiRand (Kuaishou): CC BY-SA 4.0; cite Gao et al. (CIKM 2022).",
    citation="""@inproceedings{gao2022kuairand,
  title     = {KuaiRand: An Unbiased Sequential Recommendation Dataset with Randomly Exposed
               Videos},
  author    = {Gao, Chongming and Li, Shiqi and Zhang, Yuan and Chen, Jiawei and Li, Biao and
               Lei, Wenqiang and Jiang, Peng and He, Xiangnan},
  booktitle = {CIKM}, year = {2022}
}""",
)  # fmt: skip

_register(
    "ali-ccp", ("field 301 #1", "field 301 #2", "field 301 #3"),
    description="Alibaba's Click and Conversion Prediction set in three domains by field 301 "
    "(Scenario-Wise Rec's Ali-CCP).",
    source="Ali-CCP (Tianchi dataset 408): `sample_skeleton_{train,test}.csv`, "
    "`common_features_{train,test}.csv`",
    recipe="- Every sample (a sample with click 0 and conversion 1 dropped) is a row; label "
    "click; its features are its own and its common features (those win).\n"
    "- 23 sparse fields, a feature id kept when seen 10 times in the training file, else 0; "
    "8 dense values; domains: field 301's three numbers (the manifest gives their raw ids).\n"
    "- Users and items: fields 101 and 205 as numbered; the other fields are row fields.",
    licence="Ali-CCP: distributed by Alibaba Tianchi under its terms of use after login; "
    "research use; cite Ma et al. (SIGIR 2018, ESMM).",
    citation="""@inproceedings{ma2018esmm,
  title     = {Entire Space Multi-Task Model: An Effective Approach for Estimating Post-Click
               Conversion Rate},
  author    = {Ma, Xiao and Zhao, Liqin and Huang, Guan and Wang, Zhi and Hu, Zelin and Zhu,
               Xiaoqiang and Gai, Kun},
  booktitle = {SIGIR}, year = {2018}
}""",
)  # fmt: skip


def get_spec(name: str) -> DatasetSpec:
    """A MAMDR benchmark (DATASETS) or one of the field's datasets (FIELD_DATASETS)."""
    from mdrbench.errors import unknown_name

    for registry in (DATASETS, FIELD_DATASETS):
        if name in registry:
            return registry.get(name)
    raise unknown_name("dataset", name, [*DATASETS.names(), *FIELD_DATASETS.names()])
