"""Molecules and other graphs in their standard formats → graphs → disjoint-union tf.data batches.

Usage:

    from tasks.data import molecules

    graphs = molecules.read("../shared/data/esol", targets=["measured"])  # prints: data: SMILES CSV, 1128 ...
    graphs = molecules.read_smiles_csv("../shared/data/esol/delaney-processed.csv",
                                       targets=["measured log solubility in mols per litre"])
    graphs = molecules.read_sdf("esol.sdf", targets=["measured"])    # properties as targets
    graphs = molecules.read_tu("../shared/data/mutag")           # *_A.txt, *_graph_indicator.txt, ...
    graphs = molecules.demo_molecules()                          # generated, target = Crippen logP
    train, test = graphs.take(keep), graphs.take(held_out)       # GraphSet: per-graph arrays + targets
    dataset = molecules.make_dataset(train, batch_size=32, shuffle=True)
    # → ({"node_features" (N, F), "edge_features" (E, Fe), "edge_index" (E, 2), "graph_index" (N,)}, y (B, T))

Formats:
- SMILES CSV: the SMILES column (default: the one named `smiles`, any case) and target columns by
  name; a target cell that is empty, `nan` or `NA` is a missing label (NaN, masked in the loss and
  the metrics). SMILES are stripped of surrounding whitespace (ESOL's trailing spaces). A SMILES
  of several fragments (salts, e.g. BBBP's `[Cl].CC(C)NCC…`) keeps its largest fragment (most
  heavy atoms; the first of equals) and is counted; an unparsable SMILES, an empty molecule, a
  non-numeric target or a row without any target stops with one line naming the rows
  (`skip_bad=True` drops them instead and counts them).
- SDF (`.sdf`, `.sd`, or gzipped `.sdf.gz`; RDKit's `SDMolSupplier`): molecule properties are the
  target columns (`targets` names them; without it the one property the records have, else an
  error listing the properties). A record RDKit cannot parse or sanitize, an empty molecule, a
  non-numeric target or a record without any target stops with one line naming the records by
  number (`skip_bad=True` drops and counts them); salts keep their largest fragment, counted, as
  in a CSV. A molecule's name is its canonical SMILES, as for a CSV.
- TU graph-classification folders (Morris et al., TUDataset): `<NAME>_A.txt` (`row, col`,
  1-based global node ids, every undirected edge listed both ways), `<NAME>_graph_indicator.txt`,
  `<NAME>_graph_labels.txt`, optional `<NAME>_node_labels.txt`, `<NAME>_edge_labels.txt`,
  `<NAME>_node_attributes.txt`. Node features: one-hot node labels (+ attributes); edge features:
  one-hot edge labels (or one constant feature). Counts that disagree between files stop with one
  line naming the files.
- `demo`: molecules built from ring cores and substituents with RDKit, target Crippen logP.

RDKit featurization (SMILES only; RDKit is Python and cannot run inside a TF graph):
atoms — element, heavy-atom degree, formal charge, hybridization, aromaticity, total hydrogens,
ring membership (41 features); bonds — type, conjugation, ring membership, stereo (10 features).
Every bond is two directed edges, source → target. Optionally, `descriptors` gives each molecule
RDKit's 2D descriptors (217 in RDKit 2026.09: weights, logP, TPSA, counts, E-state, BCUT, ...)
as graph-level features (`GraphSet.features`, batched as `graph_features` (B, D)).

Batching is a disjoint union: the graphs of a batch become one graph whose node ids are offset by
the nodes before them, with `graph_index` saying which graph each node belongs to. No padding.
"""

import csv
import dataclasses
import functools
import math
import pathlib
import re

import numpy as np
import tensorflow as tf

from tasks.core import pipeline
from tasks.core.errors import UserError

# === RDKit featurization ===

ELEMENTS = ["B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "As", "Se", "Br", "I"]  # + other
DEGREES = [0, 1, 2, 3, 4, 5]  # + more
FORMAL_CHARGES = [-2, -1, 0, 1, 2]  # + other
HYBRIDIZATIONS = ["S", "SP", "SP2", "SP3", "SP3D", "SP3D2"]  # + other
HYDROGENS = [0, 1, 2, 3, 4]  # 4 means 4 or more
BOND_TYPES = ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC"]
STEREO = [("STEREONONE",), ("STEREOZ", "STEREOCIS"), ("STEREOE", "STEREOTRANS"), ("STEREOANY",)]
NUM_ATOM_FEATURES = (len(ELEMENTS) + 1) + (len(DEGREES) + 1) + (len(FORMAL_CHARGES) + 1) + (
    len(HYBRIDIZATIONS) + 1) + 1 + len(HYDROGENS) + 1
NUM_BOND_FEATURES = len(BOND_TYPES) + 1 + 1 + len(STEREO)
FEATURIZER = "rdkit-v1"  # the name export and predict check, so both featurize the same way


def _one_hot(value, choices, other=True):
    vector = [float(value == choice) for choice in choices]
    if other:
        vector.append(float(value not in choices))
    return vector


def atom_features(atom):
    """The 41 features of an RDKit atom (float list)."""
    return (
        _one_hot(atom.GetSymbol(), ELEMENTS)
        + _one_hot(atom.GetDegree(), DEGREES)
        + _one_hot(atom.GetFormalCharge(), FORMAL_CHARGES)
        + _one_hot(str(atom.GetHybridization()), HYBRIDIZATIONS)
        + [float(atom.GetIsAromatic())]
        + _one_hot(min(atom.GetTotalNumHs(), HYDROGENS[-1]), HYDROGENS, other=False)
        + [float(atom.IsInRing())]
    )


def bond_features(bond):
    """The 10 features of an RDKit bond (float list)."""
    stereo = str(bond.GetStereo())
    return (
        _one_hot(str(bond.GetBondType()), BOND_TYPES, other=False)
        + [float(bond.GetIsConjugated()), float(bond.IsInRing())]
        + [float(stereo in names) for names in STEREO]
    )


@dataclasses.dataclass
class Graph:
    """One graph: nodes (n, F) float32, edges (e, Fe) float32, edge_index (e, 2) int32 local ids."""

    nodes: np.ndarray
    edges: np.ndarray
    edge_index: np.ndarray


def mol_to_graph(mol):
    """An RDKit molecule → `Graph`; every bond becomes two directed edges."""
    nodes = np.array([atom_features(atom) for atom in mol.GetAtoms()], np.float32).reshape(-1, NUM_ATOM_FEATURES)
    edges, index = [], []
    for bond in mol.GetBonds():
        features = bond_features(bond)
        begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        edges += [features, features]
        index += [(begin, end), (end, begin)]
    return Graph(nodes, np.array(edges, np.float32).reshape(-1, NUM_BOND_FEATURES),
                 np.array(index, np.int32).reshape(-1, 2))


def parse_smiles(smiles, largest_fragment=True):
    """`(mol, problem, fragments_removed)`: an RDKit molecule, or None and why not.

    Salts and mixtures keep the fragment with the most heavy atoms (the first of equals) when
    `largest_fragment`; otherwise the whole multi-fragment molecule is one disconnected graph.
    """
    from rdkit import Chem
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # failures are reported by row, not as RDKit's stderr lines
    text = smiles.strip()
    if not text:
        return None, "empty SMILES", 0
    mol = Chem.MolFromSmiles(text)
    if mol is None:
        return None, f"unparsable SMILES {text!r}", 0
    if mol.GetNumAtoms() == 0:
        return None, f"empty molecule {text!r} (no atoms)", 0
    mol, removed = keep_largest_fragment(mol) if largest_fragment else (mol, 0)
    return mol, None, removed


def keep_largest_fragment(mol):
    """`(mol, fragments removed)`: the fragment with the most heavy atoms (the first of equals)."""
    from rdkit import Chem

    fragments = Chem.GetMolFrags(mol, asMols=True)
    if len(fragments) < 2:
        return mol, 0
    return max(fragments, key=lambda fragment: fragment.GetNumHeavyAtoms()), len(fragments) - 1  # max: first of equals


# Raw descriptor values are clipped to this magnitude (Ipc reaches 1e30 on large molecules).
DESCRIPTOR_LIMIT = 1e5


def descriptor_names():
    """The names of RDKit's 2D descriptors, in RDKit's order (the installed version's list)."""
    from rdkit.Chem import Descriptors

    return [name for name, _ in Descriptors._descList]


@functools.lru_cache(maxsize=None)
def _descriptor_row(smiles, names):
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    functions = dict(Descriptors._descList)
    mol = Chem.MolFromSmiles(smiles) if smiles is not None else None
    if mol is None:  # a TU graph RDKit rejects as a molecule: every descriptor missing
        return (math.nan,) * len(names)
    values = []
    for name in names:
        try:
            values.append(float(functions[name](mol)))
        except Exception:  # RDKit raises on a few exotic molecules (e.g. partial charges): a missing value
            values.append(math.nan)
    return tuple(values)


def descriptors(smiles_list, names=None):
    """RDKit 2D descriptors of molecules (G, D) float32: non-finite values → 0, others clipped to
    ±`DESCRIPTOR_LIMIT`; a SMILES of None (no molecule) gives a row of 0. `names`: the descriptors
    to compute (a trained model's list); a name the installed RDKit lacks is a `UserError`. Rows
    are cached per SMILES within the process."""
    available = descriptor_names()
    names = tuple(names or available)
    missing = [name for name in names if name not in available]
    if missing:
        raise UserError(f"the installed RDKit lacks the descriptor(s) {', '.join(missing[:5])} this model "
                        "was trained with; install the RDKit version it was trained with.")
    rows = np.array([_descriptor_row(smiles, names) for smiles in smiles_list], np.float64).reshape(-1, len(names))
    rows = np.clip(np.nan_to_num(rows, nan=0.0, posinf=DESCRIPTOR_LIMIT, neginf=-DESCRIPTOR_LIMIT),
                   -DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT)
    return rows.astype(np.float32), list(names)


# === Graph sets ===


@dataclasses.dataclass
class GraphSet:
    """Graphs with their targets (and SMILES, for molecules).

    Attributes:
        graphs: list of Graph.
        targets: np.ndarray (G, T) float32; NaN is a missing label.
        target_names: list of str. One per column of `targets`.
        names: list of str. SMILES (canonical, after fragment removal) or `graph <id>`.
        smiles: bool. Whether `names` are SMILES (scaffold splits and fingerprints need them).
        notes: dict. Counts of what the reader did (fragments removed, rows skipped).
    """

    graphs: list
    targets: np.ndarray
    target_names: list
    names: list
    smiles: bool = True
    notes: dict = dataclasses.field(default_factory=dict)
    node_vocabulary: dict = dataclasses.field(default_factory=dict)
    features: np.ndarray = None  # (G, D) float32 graph-level features (molecular descriptors), or None
    molecules: list = None  # TU graphs rebuilt as molecules: SMILES per graph (None: RDKit rejects it), or None
    label_names: dict = None  # TU labels → element / bond type, when the graphs are molecules
    layout: str = ""  # the layout found, e.g. "SMILES CSV", "SDF", "TU folder (MUTAG)"

    def __len__(self):
        return len(self.graphs)

    @property
    def num_node_features(self):
        return int(self.graphs[0].nodes.shape[1])

    @property
    def num_edge_features(self):
        return int(self.graphs[0].edges.shape[1])

    def take(self, indices):
        indices = np.asarray(indices, np.int64)
        return dataclasses.replace(
            self, graphs=[self.graphs[i] for i in indices], targets=self.targets[indices],
            names=[self.names[i] for i in indices], features=None if self.features is None else self.features[indices],
            molecules=None if self.molecules is None else [self.molecules[i] for i in indices],
        )


def union(graphs, features=None):
    """The disjoint union of `graphs`, in NumPy (predict, and the reference for the tf.data map).

    Returns:
        dict: node_features (N, F), edge_features (E, Fe), edge_index (E, 2) global int32,
        graph_index (N,) int32; and graph_features (B, D) when `features` (one row per graph) is given.
    """
    sizes = np.array([len(graph.nodes) for graph in graphs], np.int32)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
    batch = {
        "node_features": np.concatenate([graph.nodes for graph in graphs]).astype(np.float32),
        "edge_features": np.concatenate([graph.edges for graph in graphs]).astype(np.float32),
        "edge_index": np.concatenate([graph.edge_index + offset for graph, offset in zip(graphs, offsets)]).astype(
            np.int32).reshape(-1, 2),
        "graph_index": np.repeat(np.arange(len(graphs), dtype=np.int32), sizes),
    }
    if features is not None:
        batch["graph_features"] = np.asarray(features, np.float32).reshape(len(graphs), -1)
    return batch


def make_dataset(graph_set, batch_size, shuffle=False, seed=0):
    """Batches of disjoint unions `(inputs, targets (B, T))`, shuffled each epoch if `shuffle`.

    The dataset holds graph indices (cached, shuffled, batched by `finalize`); a batch map gathers
    the batch's graphs from ragged constants and offsets their edge ids by the nodes before them.
    """
    graphs = graph_set.graphs
    num_nodes = [len(graph.nodes) for graph in graphs]
    num_edges = [len(graph.edges) for graph in graphs]
    nodes = tf.RaggedTensor.from_row_lengths(np.concatenate([g.nodes for g in graphs]), num_nodes)  # (G, None, F)
    edges = tf.RaggedTensor.from_row_lengths(np.concatenate([g.edges for g in graphs]), num_edges)  # (G, None, Fe)
    local = tf.RaggedTensor.from_row_lengths(np.concatenate([g.edge_index for g in graphs]), num_edges)  # (G, None, 2)

    features = None if graph_set.features is None else tf.constant(graph_set.features, tf.float32)  # (G, D)

    def disjoint_union(index, targets):
        batch_nodes = tf.gather(nodes, index)  # (B, None, F)
        batch_index = tf.gather(local, index)  # (B, None, 2)
        offsets = tf.cast(batch_nodes.row_starts(), tf.int32)  # nodes before each graph (B,)
        edge_graph = batch_index.value_rowids()  # (E,) which graph each edge belongs to
        inputs = {
            "node_features": batch_nodes.values,
            "edge_features": tf.gather(edges, index).values,
            "edge_index": batch_index.values + tf.gather(offsets, edge_graph)[:, None],
            "graph_index": tf.cast(batch_nodes.value_rowids(), tf.int32),
        }
        if features is not None:
            inputs["graph_features"] = tf.gather(features, index)  # (B, D)
        return inputs, targets

    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(graphs), dtype=np.int64), graph_set.targets))
    return pipeline.finalize(dataset, batch_size, shuffle=shuffle, seed=seed, batch_map=disjoint_union)


# === SMILES CSV ===


def _rows_text(rows, limit=8):
    shown = ", ".join(str(row) for row in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _pick_column(header, wanted, what, path, kind="column"):
    """The header name `wanted` names: exact, then case-insensitive, then a unique substring."""
    if wanted in header:
        return wanted
    lowered = [name for name in header if name.lower() == wanted.lower()]
    if len(lowered) == 1:
        return lowered[0]
    partial = [name for name in header if wanted.lower() in name.lower()]
    if len(partial) == 1:
        return partial[0]
    found = "several" if partial else "no"
    plural = "properties" if kind == "property" else f"{kind}s"
    raise UserError(f"{path}: {found} {kind} matches {what} {wanted!r}; {plural}: {', '.join(header)}")


def parse_target(text):
    """A target cell → float; empty / nan / NA → NaN; anything else non-numeric → None."""
    text = text.strip()
    if text.lower() in ("", "nan", "na", "n/a", "none"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def read_smiles_csv(path, targets=(), smiles_column="", largest_fragment=True, skip_bad=False):
    """Reads a SMILES CSV into a `GraphSet` (see the module docstring for the rules).

    Args:
        path: str or Path. The CSV file (header row first).
        targets: list of str. Target column names (default: the one column besides SMILES).
        smiles_column: str. The SMILES column (default: the one named smiles, any case).
        largest_fragment: bool. Keep the largest fragment of multi-fragment SMILES. Defaults to True.
        skip_bad: bool. Drop (and count) bad rows instead of stopping. Defaults to False.
    """
    path = pathlib.Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = list(csv.reader(file))
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start}).")
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise UserError(f"{path}: needs a header row and at least one molecule.")
    header = [name.strip() for name in rows[0]]
    smiles_name = _pick_column(header, smiles_column or "smiles", "the SMILES column", path)
    if targets:
        target_names = [_pick_column(header, name.strip(), "target", path) for name in targets]
    else:
        others = [name for name in header if name != smiles_name]
        if len(others) != 1:
            raise UserError(f"{path}: name the target column(s) with --targets; columns: {', '.join(header)}")
        target_names = others
    smiles_at = header.index(smiles_name)
    target_at = [header.index(name) for name in target_names]
    found = _Molecules(("unparsable", "empty", "bad_target", "no_target", "short"))
    for line, row in enumerate(rows[1:], start=2):  # line numbers of the file, the header is line 1
        if len(row) < len(header):
            found.problems["short"].append(line)
            continue
        labels = [parse_target(row[i]) for i in target_at]
        if found.bad_targets(labels, line):
            continue
        mol, problem, removed = parse_smiles(row[smiles_at], largest_fragment)
        if mol is None:
            found.problems["empty" if problem.startswith("empty") else "unparsable"].append(line)
            continue
        found.add(mol, labels, removed)
    messages = {
        "unparsable": "unparsable SMILES",
        "empty": "an empty SMILES / molecule with no atoms",
        "bad_target": f"a non-numeric value in {', '.join(target_names)}",
        "no_target": f"no value in any target column ({', '.join(target_names)})",
        "short": f"fewer than {len(header)} cells",
    }
    return found.graph_set(target_names, path, messages, ("row", "line"), skip_bad, "SMILES CSV")


class _Molecules:
    """What a molecule reader keeps (graphs, target rows, canonical SMILES) and the numbers of its
    bad rows or records by kind."""

    def __init__(self, kinds):
        self.problems = {kind: [] for kind in kinds}
        self.graphs, self.values, self.names, self.fragments = [], [], [], 0

    def bad_targets(self, labels, number):
        """Records `number` as bad and returns True when `labels` hold a non-number or no value at all."""
        if any(label is None for label in labels):
            self.problems["bad_target"].append(number)
        elif all(math.isnan(label) for label in labels):
            self.problems["no_target"].append(number)
        else:
            return False
        return True

    def add(self, mol, labels, fragments_removed):
        from rdkit import Chem

        self.fragments += bool(fragments_removed)
        self.graphs.append(mol_to_graph(mol))
        self.values.append(labels)
        self.names.append(Chem.MolToSmiles(mol))

    def graph_set(self, target_names, path, messages, words, skip_bad, layout):
        """The `GraphSet`; the first kind of bad record is a `UserError` unless `skip_bad` (then counted)."""
        notes = {"fragments_removed": self.fragments, **_skipped(self.problems, messages, path, *words, skip_bad)}
        if not self.graphs:
            raise UserError(f"{path}: no usable molecule.")
        targets = np.array(self.values, np.float32).reshape(len(self.graphs), -1)
        return GraphSet(self.graphs, targets, target_names, self.names, smiles=True, notes=notes, layout=layout)


def _skipped(problems, messages, path, unit, where, skip_bad):
    """`{"skipped_<kind>": count}`; without `skip_bad`, the first kind of bad record is a `UserError`
    naming its records (`problems`: kind → line or record numbers)."""
    bad = {kind: numbers for kind, numbers in problems.items() if numbers}
    if bad and not skip_bad:
        kind, numbers = next(iter(bad.items()))
        raise UserError(f"{path}: {len(numbers)} {unit}(s) with {messages[kind]} at {where}(s) "
                        f"{_rows_text(numbers)}; fix them or pass --skip-bad to drop them.")
    return {f"skipped_{kind}": len(numbers) for kind, numbers in bad.items()}


# === SDF ===

SDF_SUFFIXES = (".sdf", ".sd", ".sdf.gz", ".sd.gz")


def is_sdf(path):
    return pathlib.Path(path).name.lower().endswith(SDF_SUFFIXES)


def _sdf_records(path):
    """`[(record number, mol or None)]` of an SDF file, plain or gzip (RDKit's suppliers)."""
    import gzip

    from rdkit import Chem
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # bad records are reported by number, not as RDKit's stderr lines
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            return list(enumerate(Chem.ForwardSDMolSupplier(stream), 1))
    except (OSError, EOFError, RuntimeError) as error:
        raise UserError(f"{path}: cannot read it as SDF ({' '.join(str(error).split())[:120]}).")


def read_sdf(path, targets=(), largest_fragment=True, skip_bad=False):
    """Reads an SDF file (`.sdf`, or `.sdf.gz`) into a `GraphSet`: molecule properties are targets.

    The rules are the SMILES CSV's, with properties for columns and record numbers (1-based, in
    file order) for lines: a missing, empty, `nan` or `NA` property is a missing label; a record
    RDKit cannot parse or sanitize, an empty molecule, a non-numeric target or a record without
    any target stops with one line naming the records (`skip_bad=True` drops and counts them);
    salts keep their largest fragment, counted.

    Args:
        path: str or Path. The SDF file.
        targets: list of str. Target property names (default: the one property the records have).
        largest_fragment: bool. Keep the largest fragment of multi-fragment molecules. Defaults to True.
        skip_bad: bool. Drop (and count) bad records instead of stopping. Defaults to False.
    """
    path = pathlib.Path(path)
    records = _sdf_records(path)
    if all(mol is None for _, mol in records):
        raise UserError(f"{path}: no molecule RDKit can read in {len(records)} SDF record(s); an SDF record is a "
                        "mol block (V2000 or V3000) ended by a `$$$$` line.")
    properties = list(dict.fromkeys(name for _, mol in records if mol is not None for name in mol.GetPropNames()))
    if targets:
        target_names = [_pick_column(properties, name.strip(), "target", path, kind="property") for name in targets]
    elif len(properties) == 1:
        target_names = properties
    else:
        raise UserError(f"{path}: name the target propert(ies) with --targets; properties: "
                        f"{', '.join(properties) or 'none'}")
    found = _Molecules(("unparsable", "empty", "bad_target", "no_target"))
    for number, mol in records:
        if mol is None:
            found.problems["unparsable"].append(number)
            continue
        if mol.GetNumAtoms() == 0:
            found.problems["empty"].append(number)
            continue
        labels = [parse_target(mol.GetProp(name)) if mol.HasProp(name) else math.nan for name in target_names]
        if found.bad_targets(labels, number):
            continue
        mol, removed = keep_largest_fragment(mol) if largest_fragment else (mol, 0)
        found.add(mol, labels, removed)
    messages = {
        "unparsable": "a molecule RDKit cannot parse or sanitize",
        "empty": "a molecule with no atoms",
        "bad_target": f"a non-numeric value in {', '.join(target_names)}",
        "no_target": f"no value in any target property ({', '.join(target_names)})",
    }
    return found.graph_set(target_names, path, messages, ("record", "record"), skip_bad, "SDF")


def featurize_smiles(smiles_list, largest_fragment=True):
    """SMILES strings → `(graphs, canonical SMILES, fragments removed per input)`; bad ones are a
    `UserError` naming every bad input by its position (1-based) and text."""
    from rdkit import Chem

    graphs, names, removed_counts, bad = [], [], [], []
    for number, smiles in enumerate(smiles_list, 1):
        mol, problem, removed = parse_smiles(smiles, largest_fragment)
        if mol is None:
            bad.append(f"#{number} ({problem})")
            continue
        graphs.append(mol_to_graph(mol))
        names.append(Chem.MolToSmiles(mol))
        removed_counts.append(removed)
    if bad:
        raise UserError(f"{len(bad)} input(s) cannot be featurized: {_rows_text(bad, 5)}.")
    return graphs, names, removed_counts


# === TU format ===


def _read_numbers(path, dtype, columns=None):
    """A TU text file → array; a line that is not numbers is a UserError naming file and line."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append([dtype(value) for value in line.replace(",", " ").split()])
        except ValueError:
            raise UserError(f"{path}: line {number} is not numbers: {line.strip()[:40]!r}")
        if columns and len(rows[-1]) != columns:
            raise UserError(f"{path}: line {number} has {len(rows[-1])} values, expected {columns}.")
    return np.array(rows, dtype=np.float64 if dtype is float else np.int64)


def _one_hot_labels(labels, vocabulary=None):
    """Integer labels (n,) → one-hot (n, K) over `vocabulary` (sorted distinct labels by default)."""
    vocabulary = vocabulary if vocabulary is not None else sorted(set(int(x) for x in labels))
    position = {value: i for i, value in enumerate(vocabulary)}
    unknown = sorted(set(int(x) for x in labels) - set(position))
    if unknown:
        raise UserError(f"labels {unknown} were never seen in training (known: {vocabulary}).")
    out = np.zeros((len(labels), len(vocabulary)), np.float32)
    out[np.arange(len(labels)), [position[int(x)] for x in labels]] = 1.0
    return out, vocabulary


TU_BOND_TYPES = ("single", "double", "triple", "aromatic")  # names of RDKit's Chem.BondType, lower-cased


def tu_label_names(folder):
    """`{"node": {label: element}, "edge": {label: bond type}}` from a TU folder's README.txt, or None.

    A TU molecule dataset's README.txt (MUTAG's, for one) describes its labels as blocks
    `Node labels:` / `Edge labels:` of lines `<label> <name>`. They count as molecules only when every
    node label names an element and every edge label a bond type (single, double, triple, aromatic).
    """
    from rdkit import Chem

    readme = pathlib.Path(folder) / "README.txt"
    if not readme.is_file():
        return None
    blocks, current = {"node": {}, "edge": {}}, None
    for line in readme.read_text(errors="replace").splitlines():
        text = line.strip()
        heading = re.fullmatch(r"(node|edge) labels\s*:?", text, flags=re.IGNORECASE)
        if heading:
            current = heading.group(1).lower()
            continue
        entry = re.fullmatch(r"(-?\d+)\s+(\S+)", text)
        if current and entry:
            blocks[current][int(entry.group(1))] = entry.group(2)
        elif text:
            current = None
    if not blocks["node"] or not blocks["edge"]:
        return None
    table = Chem.GetPeriodicTable()
    for element in blocks["node"].values():
        try:
            table.GetAtomicNumber(element)
        except RuntimeError:
            return None
    if any(bond.lower() not in TU_BOND_TYPES for bond in blocks["edge"].values()):
        return None
    return {"node": blocks["node"], "edge": {label: bond.lower() for label, bond in blocks["edge"].items()}}


def tu_molecule(node_labels, edge_pairs, edge_labels, names):
    """One TU graph (local 0-based `edge_pairs`, every bond listed both ways) → `(smiles, problem)`.

    TU files drop charges and hydrogens. Hydrogens come back as RDKit's implicit ones. An uncharged
    nitrogen with four bonds' worth of valence (a nitro or N-oxide group as CDK writes it, N(=O)O)
    becomes N+, and a singly bonded terminal oxygen on it O−. A graph RDKit still rejects (e.g.
    MUTAG's two carbons of valence 5) gives `(None, RDKit's reason)`.
    """
    from rdkit import Chem
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # a rejected graph is reported in the notes, not as RDKit's stderr line
    mol = Chem.RWMol()
    for label in node_labels:
        mol.AddAtom(Chem.Atom(names["node"][int(label)]))
    for (begin, end), label in zip(edge_pairs, edge_labels):
        if begin < end:
            mol.AddBond(int(begin), int(end), getattr(Chem.BondType, names["edge"][int(label)].upper()))
    for bond in mol.GetBonds():
        if bond.GetBondType() == Chem.BondType.AROMATIC:
            bond.SetIsAromatic(True)
            bond.GetBeginAtom().SetIsAromatic(True)
            bond.GetEndAtom().SetIsAromatic(True)
    for atom in mol.GetAtoms():
        if atom.GetSymbol() != "N" or sum(bond.GetBondTypeAsDouble() for bond in atom.GetBonds()) < 4:
            continue
        atom.SetFormalCharge(1)
        for bond in atom.GetBonds():
            other = bond.GetOtherAtom(atom)
            if other.GetSymbol() == "O" and other.GetDegree() == 1 and bond.GetBondType() == Chem.BondType.SINGLE:
                other.SetFormalCharge(-1)
                break
    try:
        Chem.SanitizeMol(mol)
    except Exception as error:  # RDKit raises several types (valence, kekulization)
        return None, str(error).strip().splitlines()[0]
    return Chem.MolToSmiles(mol), None


def find_tu(folder):
    """The `<NAME>` prefix of the TU files in `folder`, or None."""
    found = sorted(pathlib.Path(folder).glob("*_A.txt"))
    return found[0].name[: -len("_A.txt")] if found else None


def read_tu(folder, vocabulary=None, label_names=None):
    """Reads a TU graph-classification folder into a `GraphSet` with class ids as targets.

    When the labels name elements and bond types (`tu_label_names`), each graph is also rebuilt as
    an RDKit molecule: `GraphSet.molecules` holds its canonical SMILES (None where RDKit rejects it;
    counted in `notes["not_molecules"]`), so RDKit descriptors apply. The graph's own features stay
    the one-hot TU labels.

    Args:
        folder: str or Path. The folder holding `<NAME>_A.txt` and the other files.
        vocabulary: dict or None. `{"node": [...], "edge": [...], "graph": [...]}` label values of a
            trained model (predict); default: the distinct labels of these files.
        label_names: dict or None. A trained model's `{"node": {label: element}, "edge": {label:
            bond}}` (predict); default: read from the folder's README.txt.
    """
    folder = pathlib.Path(folder)
    name = find_tu(folder)
    if name is None:
        raise UserError(f"{folder}: no <NAME>_A.txt file; not a TU graph folder.")
    file = {kind: folder / f"{name}_{kind}.txt" for kind in
            ("A", "graph_indicator", "graph_labels", "node_labels", "edge_labels", "node_attributes")}
    for kind in ("graph_indicator", "graph_labels"):
        if not file[kind].is_file():
            raise UserError(f"{folder}: {file[kind].name} is missing; a TU folder needs it.")
    edge_pairs = _read_numbers(file["A"], int, columns=2) - 1  # 0-based global node ids (E, 2)
    indicator = _read_numbers(file["graph_indicator"], int, columns=1)[:, 0]  # (N,) graph ids, 1-based
    graph_labels = _read_numbers(file["graph_labels"], int, columns=1)[:, 0]  # (G,)
    num_nodes, num_graphs = len(indicator), len(graph_labels)

    def disagree(what):
        raise UserError(f"{folder}: counts disagree: {what}.")

    if num_nodes == 0 or num_graphs == 0:
        disagree(f"{file['graph_indicator'].name} has {num_nodes} nodes, {file['graph_labels'].name} {num_graphs} graphs")
    if indicator.min() < 1 or indicator.max() != num_graphs:
        disagree(f"{file['graph_indicator'].name} names graphs {indicator.min()}..{indicator.max()} but "
                 f"{file['graph_labels'].name} has {num_graphs} labels")
    if np.any(np.diff(indicator) < 0):
        disagree(f"{file['graph_indicator'].name} is not sorted by graph id")
    present = np.bincount(indicator, minlength=num_graphs + 1)[1:]
    if np.any(present == 0):
        disagree(f"graph {int(np.argmin(present)) + 1} has no nodes in {file['graph_indicator'].name}")
    if len(edge_pairs) and (edge_pairs.min() < 0 or edge_pairs.max() >= num_nodes):
        disagree(f"{file['A'].name} names node {int(edge_pairs.max()) + 1} but "
                 f"{file['graph_indicator'].name} has {num_nodes} nodes")
    if len(edge_pairs) and np.any(indicator[edge_pairs[:, 0]] != indicator[edge_pairs[:, 1]]):
        row = int(np.flatnonzero(indicator[edge_pairs[:, 0]] != indicator[edge_pairs[:, 1]])[0]) + 1
        disagree(f"{file['A'].name} line {row} joins nodes of two different graphs")
    vocabulary = dict(vocabulary or {})
    parts = []
    if file["node_labels"].is_file():
        node_labels = _read_numbers(file["node_labels"], int, columns=1)[:, 0]
        if len(node_labels) != num_nodes:
            disagree(f"{file['node_labels'].name} has {len(node_labels)} lines, "
                     f"{file['graph_indicator'].name} {num_nodes}")
        one_hot, vocabulary["node"] = _one_hot_labels(node_labels, vocabulary.get("node"))
        parts.append(one_hot)
    else:
        node_labels = None
    if file["node_attributes"].is_file():
        attributes = _read_numbers(file["node_attributes"], float).astype(np.float32)
        if len(attributes) != num_nodes:
            disagree(f"{file['node_attributes'].name} has {len(attributes)} lines, "
                     f"{file['graph_indicator'].name} {num_nodes}")
        parts.append(attributes)
    node_features = np.concatenate(parts, axis=1) if parts else np.ones((num_nodes, 1), np.float32)
    if file["edge_labels"].is_file():
        edge_labels = _read_numbers(file["edge_labels"], int, columns=1)[:, 0]
        if len(edge_labels) != len(edge_pairs):
            disagree(f"{file['edge_labels'].name} has {len(edge_labels)} lines, {file['A'].name} {len(edge_pairs)}")
        edge_features, vocabulary["edge"] = _one_hot_labels(edge_labels, vocabulary.get("edge"))
    else:
        edge_labels = None
        edge_features = np.ones((len(edge_pairs), 1), np.float32)
    if node_labels is None or edge_labels is None:
        label_names = None  # molecules need both label files
    elif label_names is None:
        label_names = tu_label_names(folder)
    if label_names is not None:
        label_names = {part: {int(label): value for label, value in label_names[part].items()} for part in ("node", "edge")}
        unnamed = sorted(set(int(x) for x in node_labels) - set(label_names["node"])) + sorted(
            set(int(x) for x in edge_labels) - set(label_names["edge"]))
        if unnamed:
            raise UserError(f"{folder}: labels {unnamed} have no element / bond name in README.txt "
                            "(or in the trained model's label names).")
    _, vocabulary["graph"] = _one_hot_labels(graph_labels, vocabulary.get("graph"))
    classes = np.searchsorted(vocabulary["graph"], graph_labels).astype(np.float32)

    node_starts = np.concatenate([[0], np.cumsum(present)])
    edge_graph = indicator[edge_pairs[:, 0]] - 1 if len(edge_pairs) else np.zeros(0, np.int64)
    order = np.argsort(edge_graph, kind="stable")
    edge_starts = np.concatenate([[0], np.cumsum(np.bincount(edge_graph, minlength=num_graphs))])
    graphs, smiles, rejected = [], [], {}
    for g in range(num_graphs):
        edge_ids = order[edge_starts[g]:edge_starts[g + 1]]
        local_pairs = (edge_pairs[edge_ids] - node_starts[g]).astype(np.int32).reshape(-1, 2)
        graphs.append(Graph(
            node_features[node_starts[g]:node_starts[g + 1]].astype(np.float32),
            edge_features[edge_ids].astype(np.float32),
            local_pairs,
        ))
        if label_names is not None:
            text, problem = tu_molecule(node_labels[node_starts[g]:node_starts[g + 1]], local_pairs,
                                        edge_labels[edge_ids], label_names)
            smiles.append(text)
            if problem:
                rejected[f"graph {g + 1}"] = problem
    notes = {"tu_name": name}
    if rejected:
        notes["not_molecules"] = rejected
    return GraphSet(graphs, classes[:, None], [f"{name} class"], [f"graph {g + 1}" for g in range(num_graphs)],
                    smiles=False, notes=notes, node_vocabulary=vocabulary,
                    molecules=smiles if label_names is not None else None, label_names=label_names)


# === Demo ===

DEMO_CORES = ["c1ccccc1", "c1ccncc1", "C1CCCCC1", "C1CCOC1", "c1ccc2ccccc2c1", "c1ccsc1", "C1CCNCC1",
              "c1cn[nH]c1", "CCCC", "CC(C)C", "C=CC", "c1ccoc1"]
DEMO_SUBSTITUENTS = ["C", "CC", "O", "N", "F", "Cl", "Br", "C(=O)O", "C(=O)N", "OC", "C#N", "[N+](=O)[O-]",
                     "C(F)(F)F", "S", "CCO", "c1ccccc1", "C(C)C", "NC(=O)C", "OC(=O)C", "CCCC"]


def demo_molecules(num_molecules=600, seed=0):
    """Molecules built from a ring or chain core and 0-4 random substituents; target Crippen logP."""
    from rdkit import Chem
    from rdkit.Chem import Crippen

    rng = np.random.default_rng(seed)
    cores = [Chem.MolFromSmiles(smiles) for smiles in DEMO_CORES]
    substituents = [Chem.MolFromSmiles(smiles) for smiles in DEMO_SUBSTITUENTS]
    seen, graphs, values, names = set(), [], [], []
    attempts = 0
    while len(graphs) < num_molecules and attempts < 50 * num_molecules:
        attempts += 1
        mol = cores[rng.integers(len(cores))]
        for _ in range(rng.integers(0, 5)):
            free = [atom.GetIdx() for atom in mol.GetAtoms() if atom.GetTotalNumHs() > 0]
            if not free:
                break
            group = substituents[rng.integers(len(substituents))]
            combined = Chem.RWMol(Chem.CombineMols(mol, group))
            anchor = int(rng.choice(free))
            combined.AddBond(anchor, mol.GetNumAtoms(), Chem.BondType.SINGLE)  # the group's first atom
            atom = combined.GetAtomWithIdx(anchor)
            if atom.GetNumExplicitHs():  # e.g. the [nH] of pyrazole gives up its hydrogen
                atom.SetNumExplicitHs(atom.GetNumExplicitHs() - 1)
            try:
                Chem.SanitizeMol(combined)
            except Chem.rdchem.MolSanitizeException:  # a valence RDKit refuses: try another substituent
                continue
            mol = combined.GetMol()
        smiles = Chem.MolToSmiles(mol)
        if smiles in seen:
            continue
        seen.add(smiles)
        mol = Chem.MolFromSmiles(smiles)
        graphs.append(mol_to_graph(mol))
        values.append([Crippen.MolLogP(mol)])
        names.append(smiles)
    return GraphSet(graphs, np.array(values, np.float32), ["Crippen logP"], names, smiles=True,
                    notes={"fragments_removed": 0})


# === Splits ===


def scaffold(smiles):
    """The Bemis–Murcko scaffold SMILES of a molecule ('' for acyclic ones)."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=False)


def scaffold_split(smiles_list, validation_fraction, test_fraction):
    """`(train, validation, test)` indices: whole scaffold groups, largest first, fill train, then
    validation, then test (MoleculeNet/DeepChem's deterministic scaffold split): the test split
    holds the rarest scaffolds, i.e. molecules unlike those seen in training."""
    groups = {}
    for index, smiles in enumerate(smiles_list):
        groups.setdefault(scaffold(smiles), []).append(index)
    # DeepChem's order exactly: by size, then by first index, both descending (BBBP's test split then
    # holds both classes, 52 % positive; other tie orders can leave it one class).
    ordered = sorted(groups.values(), key=lambda group: (len(group), group[0]), reverse=True)
    total = len(smiles_list)
    train_cut, validation_cut = (1 - validation_fraction - test_fraction) * total, (1 - test_fraction) * total
    train, validation, test = [], [], []
    for group in ordered:
        if len(train) + len(group) <= train_cut:
            train += group
        elif len(train) + len(validation) + len(group) <= validation_cut:
            validation += group
        else:
            test += group
    return tuple(np.sort(np.array(split, np.int64)) for split in (train, validation, test))


def random_split(num_examples, validation_fraction, test_fraction, seed):
    """`(train, validation, test)` indices of a seeded random permutation (fractions of the whole)."""
    order = np.random.default_rng(seed).permutation(num_examples)
    num_test = int(round(test_fraction * num_examples))
    num_validation = int(round(validation_fraction * num_examples))
    test, validation = order[:num_test], order[num_test:num_test + num_validation]
    return np.sort(order[num_test + num_validation:]), np.sort(validation), np.sort(test)


def kfold_split(targets, num_folds, fold, seed, stratify):
    """`(train, test)` indices of fold `fold` of `num_folds`: stratified by class when `stratify`."""
    from sklearn.model_selection import KFold
    from sklearn.model_selection import StratifiedKFold

    if stratify:
        labels = targets[:, 0]
        smallest = np.bincount(labels.astype(np.int64)).min()
        if smallest < num_folds:
            raise UserError(f"--folds {num_folds}: the smallest class has only {smallest} graphs; "
                            "use fewer folds.")
        splitter = StratifiedKFold(num_folds, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros(len(labels)), labels))
    else:
        folds = list(KFold(num_folds, shuffle=True, random_state=seed).split(np.zeros(len(targets))))
    return folds[fold]


# === The entry: the --data value ===


def read(source, targets=(), smiles_column="", largest_fragment=True, skip_bad=False, seed=0, verbose=True):
    """Graphs from the `--data` value: `demo`, a SMILES CSV, an SDF file, a TU folder, or a folder
    holding one CSV or one SDF file.

    Args:
        source: str. `demo` or a path (`tfds:` has no molecule datasets: an error).
        targets: list of str. Target columns (CSV) or properties (SDF); not for TU folders.
        smiles_column: str. The SMILES column of a CSV (default: the one named smiles).
        largest_fragment: bool. Keep the largest fragment of salts and mixtures. Defaults to True.
        skip_bad: bool. Drop (and count) bad rows or records instead of stopping. Defaults to False.
        seed: int. The demo's seed. Defaults to 0.
        verbose: bool. Print `data: <layout>, <N> molecules, <targets or classes>`. Defaults to True.

    Returns:
        A `GraphSet`.
    """
    kind, value = pipeline.source(str(source))
    targets = [name for name in targets if name.strip()]
    if kind == "tfds":
        raise UserError("--data tfds:...: TFDS has no molecule datasets for this task; "
                        "pass a SMILES CSV, an SDF file, a TU folder, or demo.")
    if kind == "demo":
        found = dataclasses.replace(demo_molecules(seed=seed), layout="demo molecules")
    else:
        if value.is_dir() and find_tu(value):
            if targets:
                raise UserError(f"--targets does not apply to the TU folder {value} (its targets are graph labels).")
            found = dataclasses.replace(read_tu(value), layout=f"TU folder ({find_tu(value)})")
        else:
            if value.is_dir():
                files = sorted(path for path in value.iterdir() if path.suffix.lower() == ".csv" or is_sdf(path))
                if len(files) != 1:
                    raise UserError(f"--data {source}: expected one .csv or .sdf file or TU files (*_A.txt), "
                                    f"found {len(files)} .csv/.sdf files.")
                value = files[0]
            if is_sdf(value):
                found = read_sdf(value, targets, largest_fragment, skip_bad)
            else:
                found = read_smiles_csv(value, targets, smiles_column, largest_fragment, skip_bad)
    if verbose:
        if found.smiles:
            what = f"{len(found.target_names)} target{'s' if len(found.target_names) != 1 else ''} " \
                   f"({', '.join(found.target_names)})"
        else:
            what = f"{len(found.node_vocabulary['graph'])} classes"
        print(f"data: {found.layout}, {len(found)} {'molecules' if found.smiles else 'graphs'}, {what}")
    return found
