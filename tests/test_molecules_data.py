"""Tests for `tasks.data.molecules`: RDKit featurization, SMILES CSV and TU readers, bad input,
disjoint-union batching and the random / scaffold / K-fold splits."""

import numpy as np
import pytest

from tasks.core.errors import UserError
from tasks.data import molecules
from tests import helpers


def write_csv(path, text):
    path.write_text(text)
    return path


# === Featurization ===


def test_atoms_and_bonds_become_one_hot_features_and_two_directed_edges():
    mol, problem, removed = molecules.parse_smiles("c1ccccc1O")  # phenol: 7 heavy atoms, 7 bonds
    assert problem is None and removed == 0
    graph = molecules.mol_to_graph(mol)
    assert graph.nodes.shape == (7, molecules.NUM_ATOM_FEATURES) == (7, 41)
    assert graph.edges.shape == (14, molecules.NUM_BOND_FEATURES) == (14, 10)
    # Each bond listed both ways, with the same features.
    pairs = {tuple(pair) for pair in graph.edge_index}
    assert all((b, a) in pairs for a, b in pairs)
    carbon, oxygen = graph.nodes[0], graph.nodes[6]
    element = slice(0, len(molecules.ELEMENTS) + 1)
    assert carbon[element].argmax() == molecules.ELEMENTS.index("C")
    assert oxygen[element].argmax() == molecules.ELEMENTS.index("O")
    aromatic = 14 + 7 + 6 + 7  # after element, degree, charge and hybridization one-hots
    assert carbon[aromatic] == 1 and oxygen[aromatic] == 0
    assert carbon[-1] == 1 and oxygen[-1] == 0  # ring membership
    hydrogens = slice(aromatic + 1, aromatic + 6)
    assert oxygen[hydrogens].argmax() == 1  # the OH hydrogen
    ring_bond = graph.edges[0]
    assert ring_bond[molecules.BOND_TYPES.index("AROMATIC")] == 1 and ring_bond[5] == 1  # aromatic, in ring
    assert np.all(graph.nodes.sum(axis=1) >= 5)  # every atom has each one-hot group set


def test_stereo_and_charges_are_featurized():
    mol, _, _ = molecules.parse_smiles("F/C=C/F")
    graph = molecules.mol_to_graph(mol)
    double = graph.edges[graph.edges[:, molecules.BOND_TYPES.index("DOUBLE")] == 1][0]
    assert double[6 + 2] == 1  # E / trans
    mol, _, _ = molecules.parse_smiles("C[N+](C)(C)C")
    nitrogen = molecules.mol_to_graph(mol).nodes[1]
    charges = slice(14 + 7, 14 + 7 + 6)
    assert nitrogen[charges].argmax() == molecules.FORMAL_CHARGES.index(1)


def test_salts_keep_the_largest_fragment_or_everything():
    mol, _, removed = molecules.parse_smiles("[Na+].[O-]C(=O)c1ccccc1")
    assert removed == 1 and mol.GetNumAtoms() == 9  # benzoate without the sodium
    mol, _, removed = molecules.parse_smiles("[Na+].[O-]C(=O)c1ccccc1", largest_fragment=False)
    assert removed == 0 and mol.GetNumAtoms() == 10


# === SMILES CSV ===


def test_csv_strips_spaces_picks_columns_by_name_and_counts_salts(tmp_path):
    path = write_csv(tmp_path / "m.csv", "id,SMILES,logS,other\na,CCO ,-0.5,1\nb, c1ccccc1 ,-2.0,2\n"
                                         "c,[Cl-].C[NH3+],1.0,3\n")
    graph_set = molecules.read_smiles_csv(path, targets=["logs"])  # case-insensitive
    assert graph_set.names == ["CCO", "c1ccccc1", "C[NH3+]"]
    np.testing.assert_allclose(graph_set.targets[:, 0], [-0.5, -2.0, 1.0])
    assert graph_set.notes["fragments_removed"] == 1
    assert molecules.read_smiles_csv(path, targets=["oth"]).target_names == ["other"]  # a unique substring
    with pytest.raises(UserError, match="name the target column"):
        molecules.read_smiles_csv(path)  # three candidate columns
    with pytest.raises(UserError, match="no column matches target 'pIC50'.*id, SMILES, logS, other"):
        molecules.read_smiles_csv(path, targets=["pIC50"])


def test_unparsable_smiles_name_their_lines_or_are_skipped_and_counted(tmp_path):
    path = write_csv(tmp_path / "m.csv", "smiles,y\nCCO,1\nC1CC,0\nCCN,1\nnot_a_molecule,0\nCCC,1\n")
    with pytest.raises(UserError, match=r"2 row\(s\) with unparsable SMILES at line\(s\) 3, 5.*--skip-bad"):
        molecules.read_smiles_csv(path)
    graph_set = molecules.read_smiles_csv(path, skip_bad=True)
    assert len(graph_set) == 3 and graph_set.notes["skipped_unparsable"] == 2


def test_empty_molecules_are_reported(tmp_path):
    path = write_csv(tmp_path / "m.csv", "smiles,y\nCCO,1\n  ,0\n")
    with pytest.raises(UserError, match=r"empty SMILES.*line\(s\) 3"):
        molecules.read_smiles_csv(path)
    _, problem, _ = molecules.parse_smiles("")
    assert problem == "empty SMILES"
    with pytest.raises(UserError, match="#2 .empty SMILES"):
        molecules.featurize_smiles(["CCO", " "])


def test_missing_targets_are_nan_a_row_without_any_is_an_error(tmp_path):
    path = write_csv(tmp_path / "tox.csv", "smiles,a,b\nCCO,1,\nCCN,,0\nCCC,nan,1\n")
    graph_set = molecules.read_smiles_csv(path, targets=["a", "b"])
    assert np.isnan(graph_set.targets).sum() == 3 and graph_set.targets[0, 0] == 1
    write_csv(path, "smiles,a,b\nCCO,1,\nCCN,,\n")
    with pytest.raises(UserError, match=r"no value in any target column \(a, b\) at line\(s\) 3"):
        molecules.read_smiles_csv(path, targets=["a", "b"])
    write_csv(path, "smiles,a\nCCO,1\nCCN,active\n")
    with pytest.raises(UserError, match="non-numeric value in a at line"):
        molecules.read_smiles_csv(path)


# === SDF ===


def write_sdf(path, records):
    """`records`: [(SMILES, {property: text})] written with RDKit's SDWriter (gzipped for .gz)."""
    import gzip

    from rdkit import Chem

    stream = gzip.open(path, "wt") if path.suffix == ".gz" else open(path, "w")
    with stream, Chem.SDWriter(stream) as writer:
        for smiles, properties in records:
            mol = Chem.MolFromSmiles(smiles)
            for name, value in properties.items():
                mol.SetProp(name, value)
            writer.write(mol)
    return path


@pytest.fixture(scope="module")
def esol_as_sdf(shared_data, tmp_path_factory):
    """ESOL's CSV, and the same rows written as an SDF: every column but the SMILES a property."""
    import csv

    source = shared_data / "esol" / "delaney-processed.csv"
    with open(source, newline="") as file:
        rows = list(csv.DictReader(file))
    records = [(row["smiles"].strip(), {name: value for name, value in row.items() if name != "smiles"})
               for row in rows]
    return source, write_sdf(tmp_path_factory.mktemp("esol") / "esol.sdf", records)


def test_esol_as_sdf_gives_the_csv_molecules_and_targets_exactly(esol_as_sdf):
    source, sdf = esol_as_sdf
    from_csv = molecules.read(str(source), targets=["measured"], verbose=False)
    from_sdf = molecules.read(str(sdf), targets=["measured"], verbose=False)
    assert len(from_csv) == 1128 and from_sdf.layout == "SDF"
    assert from_sdf.names == from_csv.names  # canonical SMILES, molecule by molecule
    assert from_sdf.target_names == from_csv.target_names == ["measured log solubility in mols per litre"]
    np.testing.assert_array_equal(from_sdf.targets, from_csv.targets)
    for one, other in zip(from_sdf.graphs[:50], from_csv.graphs[:50]):
        np.testing.assert_array_equal(one.nodes, other.nodes)
        np.testing.assert_array_equal(one.edge_index, other.edge_index)


def test_a_gzipped_sdf_in_a_folder_is_read(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_sdf(folder / "set.sdf.gz", [("CCO", {"logS": "0.5"}), ("c1ccccc1", {"logS": "-2"})])
    graph_set = molecules.read(str(folder), verbose=False)  # one property: the target
    assert graph_set.names == ["CCO", "c1ccccc1"] and graph_set.target_names == ["logS"]
    np.testing.assert_array_equal(graph_set.targets[:, 0], [0.5, -2.0])


def test_sdf_without_targets_lists_the_properties(tmp_path):
    path = write_sdf(tmp_path / "m.sdf", [("CCO", {"ID": "a", "logS": "0.5", "pIC50": "6"})])
    with pytest.raises(UserError, match=r"name the target propert\(ies\) with --targets; properties: ID, logS, pIC50"):
        molecules.read(str(path), verbose=False)
    with pytest.raises(UserError, match="no property matches target 'tox'; properties: ID, logS, pIC50"):
        molecules.read(str(path), targets=["tox"], verbose=False)


def test_sdf_salts_keep_the_largest_fragment_and_are_counted(tmp_path, capsys):
    path = write_sdf(tmp_path / "m.sdf", [("[Na+].[O-]C(=O)c1ccccc1", {"y": "1"}), ("C[NH3+]", {"y": "2"})])
    graph_set = molecules.read(str(path))
    assert graph_set.names == ["O=C([O-])c1ccccc1", "C[NH3+]"] and graph_set.notes["fragments_removed"] == 1
    assert capsys.readouterr().out.splitlines() == ["data: SDF, 2 molecules, 1 target (y)"]


def test_sdf_records_rdkit_rejects_are_named_or_skipped_and_counted(tmp_path):
    from rdkit import Chem

    path = write_sdf(tmp_path / "m.sdf", [("CCO", {"y": "1"}), ("CCN", {"y": "2"})])
    pentavalent = Chem.MolToMolBlock(Chem.MolFromSmiles("C(C)(C)(C)(C)C", sanitize=False), kekulize=False)
    path.write_text(path.read_text() + pentavalent + ">  <y>\n3\n\n$$$$\n")
    with pytest.raises(UserError, match=r"1 record\(s\) with a molecule RDKit cannot parse or sanitize at record\(s\) 3"):
        molecules.read(str(path), verbose=False)
    graph_set = molecules.read(str(path), skip_bad=True, verbose=False)
    assert graph_set.names == ["CCO", "CCN"] and graph_set.notes["skipped_unparsable"] == 1


@pytest.mark.parametrize("content", ["", "not a molecule\n"])
def test_an_sdf_without_a_molecule_is_one_line(content, tmp_path, capsys):
    from tasks import graph_property

    (tmp_path / "empty.sdf").write_text(content)
    result = helpers.run_in_process(graph_property, capsys, tmp_path, "train", "--data", tmp_path / "empty.sdf")
    helpers.assert_one_line_error(result, "empty.sdf", "no molecule RDKit can read")
    assert not (tmp_path / "runs").exists()


# === TU format ===


def write_tu(folder, name="TOY", node_labels=None, indicator=None, graph_labels=None, edges=None):
    """Two graphs: a triangle (nodes 1-3) and an edge (nodes 4-5), every edge listed both ways."""
    folder.mkdir(exist_ok=True)
    edges = edges or [(1, 2), (2, 1), (2, 3), (3, 2), (1, 3), (3, 1), (4, 5), (5, 4)]
    (folder / f"{name}_A.txt").write_text("".join(f"{a}, {b}\n" for a, b in edges))
    (folder / f"{name}_graph_indicator.txt").write_text("\n".join(map(str, indicator or [1, 1, 1, 2, 2])) + "\n")
    (folder / f"{name}_graph_labels.txt").write_text("\n".join(map(str, graph_labels or [1, -1])) + "\n")
    (folder / f"{name}_node_labels.txt").write_text("\n".join(map(str, node_labels or [0, 1, 0, 2, 2])) + "\n")
    (folder / f"{name}_edge_labels.txt").write_text("\n".join(["0", "0", "1", "1", "0", "0", "2", "2"]) + "\n")
    return folder


def test_tu_reader_splits_graphs_and_one_hot_encodes_labels(tmp_path):
    graph_set = molecules.read_tu(write_tu(tmp_path / "toy"))
    assert len(graph_set) == 2 and not graph_set.smiles
    first, second = graph_set.graphs
    assert first.nodes.shape == (3, 3) and second.nodes.shape == (2, 3)  # node labels {0, 1, 2}
    assert first.edges.shape == (6, 3) and second.edges.shape == (2, 3)  # edge labels {0, 1, 2}
    np.testing.assert_array_equal(second.edge_index, [[0, 1], [1, 0]])  # local ids
    np.testing.assert_array_equal(graph_set.targets[:, 0], [1, 0])  # labels 1, -1 → classes of sorted (-1, 1)
    assert graph_set.node_vocabulary["graph"] == [-1, 1]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"node_labels": [0, 1, 0, 2]}, "TOY_node_labels.txt has 4 lines, TOY_graph_indicator.txt 5"),
        ({"graph_labels": [1, -1, 1]}, "names graphs 1..2 but TOY_graph_labels.txt has 3 labels"),
        ({"edges": [(1, 2), (2, 1), (2, 3), (3, 2), (1, 3), (3, 1), (4, 6), (6, 4)]}, "names node 6"),
        ({"edges": [(1, 2), (2, 1), (2, 3), (3, 2), (1, 4), (4, 1), (4, 5), (5, 4)]}, "two different graphs"),
    ],
)
def test_tu_counts_that_disagree_are_one_line_errors(tmp_path, change, words):
    with pytest.raises(UserError, match="counts disagree") as raised:
        molecules.read_tu(write_tu(tmp_path / "toy", **change))
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_tu_prediction_refuses_labels_never_seen(tmp_path):
    folder = write_tu(tmp_path / "toy", node_labels=[0, 1, 0, 5, 5])
    with pytest.raises(UserError, match=r"labels \[5\] were never seen"):
        molecules.read_tu(folder, vocabulary={"node": [0, 1, 2], "edge": [0, 1, 2], "graph": [-1, 1]})


MOLECULE_README = """Node labels:

  0  C
  1  N
  2  O

Edge labels:

  0  aromatic
  1  single
  2  double
"""


def write_tu_molecules(folder, readme=MOLECULE_README, ring_label=0):
    """Two MUTAG-style graphs: nitrobenzene as CDK writes it (charges dropped, N(=O)O) and ethanol."""
    folder.mkdir(exist_ok=True)
    ring = [(i, (i + 1) % 6, ring_label) for i in range(6)]
    bonds = ring + [(0, 6, 1), (6, 7, 2), (6, 8, 1)] + [(9, 10, 1), (10, 11, 1)]  # 0-based, labels
    pairs = [(a, b, label) for a, b, label in bonds] + [(b, a, label) for a, b, label in bonds]
    (folder / "MOL_A.txt").write_text("".join(f"{a + 1}, {b + 1}\n" for a, b, _ in pairs))
    (folder / "MOL_edge_labels.txt").write_text("".join(f"{label}\n" for _, _, label in pairs))
    (folder / "MOL_graph_indicator.txt").write_text("1\n" * 9 + "2\n" * 3)
    (folder / "MOL_graph_labels.txt").write_text("1\n-1\n")
    (folder / "MOL_node_labels.txt").write_text("\n".join(map(str, [0] * 6 + [1, 2, 2] + [0, 0, 2])) + "\n")
    if readme:
        (folder / "README.txt").write_text(readme)
    return folder


def test_tu_molecules_are_rebuilt_from_the_readme_label_names(tmp_path):
    graph_set = molecules.read_tu(write_tu_molecules(tmp_path / "mol"))
    assert graph_set.label_names == {"node": {0: "C", 1: "N", 2: "O"},
                                     "edge": {0: "aromatic", 1: "single", 2: "double"}}
    # The nitro group gets its charges back; hydrogens are RDKit's implicit ones.
    assert graph_set.molecules == ["O=[N+]([O-])c1ccccc1", "CCO"]
    assert "not_molecules" not in graph_set.notes
    assert graph_set.graphs[0].nodes.shape == (9, 3)  # the network still sees the one-hot TU labels
    assert graph_set.take([1]).molecules == ["CCO"]
    # Their descriptors count the implicit hydrogens: nitrobenzene C6H5NO2 123.11, ethanol C2H6O 46.07.
    rows, names = molecules.descriptors(graph_set.molecules)
    np.testing.assert_allclose(rows[:, names.index("MolWt")], [123.11, 46.07], atol=0.01)


@pytest.mark.parametrize("readme", [None, "Node labels:\n  0 C\n  1 N\n  2 Oxygen\n\nEdge labels:\n  0 aromatic\n"
                                          "  1 single\n  2 double\n",
                                    MOLECULE_README.replace("double", "wedge")])
def test_tu_graphs_are_not_molecules_without_element_and_bond_names(tmp_path, readme):
    graph_set = molecules.read_tu(write_tu_molecules(tmp_path / "mol", readme=readme))
    assert graph_set.molecules is None and graph_set.label_names is None


def test_tu_graphs_rdkit_rejects_are_counted_and_get_no_descriptors(tmp_path):
    # Every ring bond double: the ring carbon bearing the nitro group has valence 5 (as in MUTAG's
    # graphs 83 and 188).
    graph_set = molecules.read_tu(write_tu_molecules(tmp_path / "mol", ring_label=2))
    assert graph_set.molecules[1] == "CCO"
    assert graph_set.molecules[0] is None and list(graph_set.notes["not_molecules"]) == ["graph 1"]
    assert "valence" in graph_set.notes["not_molecules"]["graph 1"]
    rows = molecules.descriptors(graph_set.molecules)[0]
    assert not rows[0].any() and rows[1].any()


def test_tu_labels_without_a_name_are_one_line_errors(tmp_path):
    folder = write_tu_molecules(tmp_path / "mol")
    (folder / "MOL_node_labels.txt").write_text("\n".join(map(str, [0] * 6 + [1, 2, 2] + [0, 0, 3])) + "\n")
    with pytest.raises(UserError, match=r"labels \[3\] have no element / bond name") as raised:
        molecules.read_tu(folder)
    assert "\n" not in str(raised.value)


# === Batching ===


def test_batches_are_disjoint_unions_without_padding():
    graph_set = molecules.demo_molecules(num_molecules=12)
    inputs, targets = next(iter(molecules.make_dataset(graph_set, batch_size=5)))
    expected = molecules.union(graph_set.graphs[:5])
    for key, value in expected.items():
        np.testing.assert_array_equal(inputs[key].numpy(), value)
    sizes = [len(graph.nodes) for graph in graph_set.graphs[:5]]
    assert inputs["node_features"].shape[0] == sum(sizes)  # no padding to the largest
    np.testing.assert_array_equal(np.bincount(inputs["graph_index"].numpy()), sizes)
    # Every edge stays inside its own graph after the offsets.
    graph_of = inputs["graph_index"].numpy()
    edge_index = inputs["edge_index"].numpy()
    assert np.all(graph_of[edge_index[:, 0]] == graph_of[edge_index[:, 1]])
    second = edge_index[graph_of[edge_index[:, 0]] == 1]
    np.testing.assert_array_equal(second - sizes[0], graph_set.graphs[1].edge_index)
    np.testing.assert_allclose(targets.numpy(), graph_set.targets[:5])


def test_demo_targets_are_crippen_logp():
    from rdkit import Chem
    from rdkit.Chem import Crippen

    graph_set = molecules.demo_molecules(num_molecules=30, seed=3)
    assert len(set(graph_set.names)) == 30
    for smiles, value in zip(graph_set.names[:10], graph_set.targets[:10, 0]):
        assert value == pytest.approx(Crippen.MolLogP(Chem.MolFromSmiles(smiles)), abs=1e-4)


# === Splits ===


def test_scaffold_split_keeps_each_scaffold_in_one_split():
    smiles = (["c1ccccc1C", "c1ccccc1CC", "c1ccccc1O", "c1ccccc1N", "c1ccccc1F"]  # benzene × 5
              + ["C1CCCCC1C", "C1CCCCC1O", "C1CCCCC1N"]  # cyclohexane × 3
              + ["c1ccncc1C", "CCO"])  # pyridine, acyclic
    train, validation, test = molecules.scaffold_split(smiles, 0.1, 0.1)
    assert sorted(np.concatenate([train, validation, test])) == list(range(10))
    assert set(train) == set(range(8))  # the two big scaffold groups
    assert len(validation) == 1 and len(test) == 1
    assert molecules.scaffold("c1ccccc1CC") == "c1ccccc1" and molecules.scaffold("CCO") == ""


def test_stratified_kfold_partitions_and_keeps_class_shares():
    targets = np.array([[1.0]] * 30 + [[0.0]] * 10)
    tests = [molecules.kfold_split(targets, 5, fold, seed=0, stratify=True)[1] for fold in range(5)]
    assert sorted(np.concatenate(tests)) == list(range(40))
    assert all(targets[test, 0].sum() == 6 for test in tests)  # 30 positives / 5 folds
    with pytest.raises(UserError, match="smallest class has only 10"):
        molecules.kfold_split(targets, 12, 0, seed=0, stratify=True)


def test_descriptors_are_rdkits_clipped_and_follow_the_graphs_into_batches():
    from rdkit import Chem
    from rdkit.Chem import Crippen

    smiles = ["CCO", "c1ccccc1O", "CCCCCCCCCCCCCCCCCCCC(=O)OCC(O)CO"]
    features, names = molecules.descriptors(smiles)
    assert features.shape == (3, len(molecules.descriptor_names())) and names == molecules.descriptor_names()
    assert features.dtype == np.float32 and np.all(np.abs(features) <= molecules.DESCRIPTOR_LIMIT)
    logp = [Crippen.MolLogP(Chem.MolFromSmiles(one)) for one in smiles]
    np.testing.assert_allclose(features[:, names.index("MolLogP")], logp, rtol=1e-5)
    assert features[2, names.index("Ipc")] == molecules.DESCRIPTOR_LIMIT  # ~1e7 raw: clipped
    subset, picked = molecules.descriptors(smiles, ["TPSA", "MolWt"])
    np.testing.assert_allclose(subset, features[:, [names.index("TPSA"), names.index("MolWt")]])
    with pytest.raises(UserError, match="lacks the descriptor.*NoSuchDescriptor"):
        molecules.descriptors(smiles, ["TPSA", "NoSuchDescriptor"])

    graph_set = molecules.demo_molecules(num_molecules=10, seed=2)
    graph_set.features = np.arange(20, dtype=np.float32).reshape(10, 2)
    taken = graph_set.take([7, 2])
    np.testing.assert_array_equal(taken.features, [[14, 15], [4, 5]])
    inputs, _ = next(iter(molecules.make_dataset(graph_set, batch_size=4)))
    np.testing.assert_array_equal(inputs["graph_features"].numpy(), graph_set.features[:4])
    expected = molecules.union(graph_set.graphs[:4], graph_set.features[:4])
    assert set(inputs) == set(expected)
