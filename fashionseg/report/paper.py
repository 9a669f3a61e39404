"""The paper's own figures (``paper_figures.yaml``: Tables 1 and 2, the
background-only baseline of section 4.1, the throughput of section 5) and
the parameters of the run they are reported beside."""
from pathlib import Path
from typing import List, Optional

import yaml

from fashionseg.errors import DataError
from fashionseg.report.labels import MAIN_IOU

PAPER_FIGURES = Path(__file__).with_name('paper_figures.yaml')


class ParamsSectionError(DataError, KeyError):
    """A params.yaml without the section or keys the report needs (a
    ``KeyError`` too, as a missing key is; its message is not quoted)."""
    __str__ = BaseException.__str__


def load_section(params_path: Path, section: Optional[str] = None) -> dict:
    """The pipeline parameters of the paper's run (top level) or of a
    section (``demo``)."""
    try:
        params = yaml.safe_load(Path(params_path).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ParamsSectionError(
            f'{params_path}: not YAML ({str(error).splitlines()[0]})'
        ) from None
    if not isinstance(params, dict):
        raise ParamsSectionError(f'{params_path}: not the pipeline\'s '
                                 'parameters (no keys at its top level)')
    if section:
        if section not in params or not isinstance(params[section], dict):
            raise ParamsSectionError(f'{params_path}: no section {section!r}')
        params = params[section]
    where = section or 'top level'
    for key, kind in (('datasets', str), ('models', str), ('seeds', int)):
        if key not in params:
            raise ParamsSectionError(f'{params_path}: {where} has no {key!r}')
        values = params[key]
        if not isinstance(values, list) or not values or not all(
                isinstance(v, kind) and not isinstance(v, bool) and v != ''
                for v in values):
            raise ParamsSectionError(
                f'{params_path}: {where}\'s {key!r} is {values!r}, not a '
                f'list of {"names" if kind is str else "whole numbers"}')
    return params


def load_paper_figures(path: Path = PAPER_FIGURES) -> dict:
    return yaml.safe_load(Path(path).read_text())


def paper_records(paper: dict) -> List[dict]:
    """The paper's figures as records like :func:`measured_records`'."""
    records = []
    for table, methods in paper['tables'].items():
        for method, by_dataset in methods.items():
            for dataset, figures in by_dataset.items():
                for metric, key in (('aAcc', 'acc'), (MAIN_IOU, 'iou')):
                    records.append(dict(
                        source='paper', dataset=dataset, method=method,
                        table=table, seed=None, metric=metric,
                        value=float(figures[key])))
    return records
