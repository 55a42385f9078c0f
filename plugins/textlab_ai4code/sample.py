"""`--data sample`: small synthetic notebooks the plugin makes itself (for tests and the demo).

Each notebook walks through a data-science workflow on a made-up dataset: a title and an
introduction, then sections (load, clean, explore, plot, model, evaluate...), each a markdown
cell or two followed by its code. Markdown and code share names (columns, functions), and titles
come first and conclusions last, so every model has something to learn, as on real notebooks.
Some notebooks are forks of others (same ancestor), so grouped splits are exercised.
The generator is seeded: the same files every time.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import textlab

from .data import CODE, MARKDOWN, TASK, kaggle_notebook, write_layout

VERSION = 2
SIZES = {"train": 160, "valid": 40, "test": 40}

TOPICS = [
    ("titanic", "Survived", ["Age", "Fare", "Pclass", "Sex"]),
    ("house_prices", "SalePrice", ["LotArea", "YearBuilt", "GrLivArea", "OverallQual"]),
    ("iris", "species", ["sepal_length", "sepal_width", "petal_length", "petal_width"]),
    ("wine_quality", "quality", ["alcohol", "acidity", "sulphates", "density"]),
    ("bike_sharing", "count", ["temp", "humidity", "windspeed", "season"]),
    ("credit_default", "default", ["balance", "income", "limit", "age"]),
    ("diabetes", "Outcome", ["Glucose", "BMI", "Insulin", "Pregnancies"]),
    ("movies", "rating", ["budget", "runtime", "genre", "year"]),
]
MODELS = [("RandomForestClassifier", "random forest"), ("LogisticRegression", "logistic regression"),
          ("GradientBoostingClassifier", "gradient boosting"), ("KNeighborsClassifier", "nearest neighbours")]


def _sections(r: random.Random, name: str, target: str, cols: list[str]) -> list[list[tuple[str, str]]]:
    """The workflow as sections of (cell type, source) in their true order."""
    c1, c2 = r.sample(cols, 2)
    model, model_words = r.choice(MODELS)
    pretty = name.replace("_", " ")
    out = [
        [(MARKDOWN, f"# {pretty.title()}: {r.choice(['exploration and modelling', 'a first look', 'predicting ' + target])}"),
         (MARKDOWN, f"In this notebook we study the {pretty} data and try to predict `{target}`.")],
        [(MARKDOWN, r.choice(["## Imports", "## Libraries", "First, the libraries we need."])),
         (CODE, "import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\nimport seaborn as sns")],
        [(MARKDOWN, f"## Load the data\nWe read `{name}.csv` with pandas."),
         (CODE, f"df = pd.read_csv('../input/{name}.csv')\ndf.shape"),
         (CODE, "df.head()")],
        [(MARKDOWN, f"## Missing values\nHow many values are missing in `{c1}`?"),
         (CODE, f"df.isnull().sum()"),
         (CODE, f"df['{c1}'] = df['{c1}'].fillna(df['{c1}'].median())")],
        [(MARKDOWN, f"## Distribution of {c2}\nA histogram of `{c2}`."),
         (CODE, f"plt.hist(df['{c2}'], bins=30)\nplt.title('{c2}')\nplt.show()")],
        [(MARKDOWN, f"Let us look at how `{c2}` relates to `{target}`."),
         (CODE, f"sns.boxplot(x='{target}', y='{c2}', data=df)")],
        [(MARKDOWN, "## Correlations\nA heatmap of the correlation matrix."),
         (CODE, "corr = df.corr()\nsns.heatmap(corr, annot=True)")],
        [(MARKDOWN, f"## Train / test split\nWe keep 20% of the rows to validate."),
         (CODE, f"from sklearn.model_selection import train_test_split\nX = df[{cols!r}]\ny = df['{target}']\n"
                f"X_train, X_valid, y_train, y_valid = train_test_split(X, y, test_size=0.2)")],
        [(MARKDOWN, f"## Model: {model_words}\nWe fit a `{model}`."),
         (CODE, f"from sklearn.ensemble import {model}\nmodel = {model}()\nmodel.fit(X_train, y_train)")],
        [(MARKDOWN, "## Evaluation\nAccuracy on the validation rows."),
         (CODE, "from sklearn.metrics import accuracy_score\npred = model.predict(X_valid)\naccuracy_score(y_valid, pred)")],
        [(MARKDOWN, "## Submission"),
         (CODE, f"sub = pd.DataFrame({{'{target}': model.predict(X_valid)}})\nsub.to_csv('submission.csv', index=False)")],
        [(MARKDOWN, r.choice(["## Conclusion\nThanks for reading! Please upvote if it helped.",
                              f"## Summary\nA {model_words} model gives a reasonable baseline for {pretty}."]))],
    ]
    return out


def make_notebook(r: random.Random) -> list[tuple[str, str]]:
    name, target, cols = r.choice(TOPICS)
    sections = _sections(r, name, target, cols)
    keep = [sections[0], sections[1], sections[2]]
    for sec in sections[3:-1]:
        if r.random() < 0.75:
            keep.append(sec)
    if r.random() < 0.8:
        keep.append(sections[-1])
    if r.random() < 0.5:  # a long notebook: one section per column and kind of plot
        plots = [("histogram", "plt.hist(df['{c}'], bins=20)"), ("box plot", "sns.boxplot(y=df['{c}'])"),
                 ("summary", "df['{c}'].describe()"), ("value counts", "df['{c}'].value_counts().head(10)")]
        extra = []
        for c in cols:
            for what, tpl in r.sample(plots, r.randint(1, 4)):
                extra.append([(MARKDOWN, f"### {c}: {what}"), (CODE, tpl.format(c=c))])
        keep[4:4] = extra
    cells = [cell for sec in keep for cell in sec]
    if r.random() < 0.3:  # an extra remark after a code cell
        i = r.randrange(2, len(cells))
        cells.insert(i, (MARKDOWN, r.choice(["Interesting!", "Note: this takes a few seconds.", "As expected."])))
    return cells


def build(root: Path) -> None:
    """Write the three splits of the sample under `root/<split>/` in Kaggle layout."""
    r = random.Random(20220511)
    for split, n in SIZES.items():
        notebooks, parents = [], []
        for k in range(n):
            if parents and r.random() < 0.15:  # a fork: same ancestor, one section more or less
                anc, cells = r.choice(parents)
                cells = list(cells)
                cells.pop(r.randrange(3, len(cells))) if len(cells) > 6 else None
            else:
                cells = make_notebook(r)
                anc = hashlib.sha256(f"{split}:{k}:anc".encode()).hexdigest()[:8]
                parents.append((anc, cells))
            nb_id = hashlib.sha256(f"{split}:{k}".encode()).hexdigest()[:14]
            notebooks.append(kaggle_notebook(nb_id, cells, ancestor=anc))
        write_layout(root / split, notebooks)


def load_sample(split: str = "train") -> Path:
    """The folder of one split of the sample (made on first use, cached under TEXTLAB_HOME)."""
    if split not in SIZES:
        raise textlab.UsageError(f"the sample has splits {', '.join(SIZES)}, not {split!r}")
    root = textlab.cache_dir(TASK, "sample", f"v{VERSION}")
    done = root / ".complete"
    if not done.exists():
        build(root)
        done.write_text("ok\n")
    return root / split
