"""The strict TMDL reader: what it reads from the model, and the broken text it refuses."""

from __future__ import annotations

import pytest

from . import tmdl
from .project import POWERBI, load_model

MODEL = POWERBI / "TrafficPlatform.SemanticModel"


def test_reads_tables_columns_measures_partitions_relationships(project):
    model = project.model
    assert set(model.tables) == {
        "Hourly counts",
        "Counts by class",
        "Data quality",
        "Date",
        "Time of day",
        "Locations",
        "Model versions",
    }
    for table in model.tables.values():
        assert table.columns and table.partitions, table.name
        for c in table.columns.values():
            assert c.data_type and c.source_column, f"{table.name}[{c.name}]"
        assert table.annotations == {"PBI_ResultType": "Table"}
    vehicles = model.tables["Hourly counts"].measures["Vehicles"]
    assert vehicles.expression.splitlines() == [
        "VAR _version = [Model version in use]",
        "RETURN",
        "    CALCULATE(SUM('Hourly counts'[vehicles]), 'Model versions'[model_version] = _version)",
    ]
    assert (vehicles.format_string, vehicles.display_folder) == ("#,0", "Counts")
    m = model.tables["Locations"].partitions[0]
    assert (m.kind, m.mode) == ("m", "import")
    assert m.source.splitlines()[0] == "let" and m.source.splitlines()[-1] == "    Typed"
    assert model.tables["Date"].columns["date"].is_key
    assert model.tables["Date"].columns["month_name"].sort_by == "month"
    assert len(model.relationships) == 10
    rel = [
        r
        for r in model.relationships
        if r.from_table == "Counts by class" and r.to_table == "Time of day"
    ]
    assert [(r.from_column, r.to_column) for r in rel] == [("time_slot", "time_slot")]
    assert set(model.expressions) == {"Server", "Database"}
    assert model.database.properties == {"compatibilityLevel": "1567"}
    assert model.model.groups["dataAccessOptions"] == {
        "legacyRedirects": True,
        "returnErrorValuesAsNull": True,
    }


def test_reads_descriptions_fences_and_quoted_names():
    root = tmdl.parse(
        "/// Sales, by day.\n"
        "table 'It''s sales'\n"
        "\tlineageTag: x\n\n"
        "\tmeasure 'A b' = ```\n"
        "\t\t\tSUM('It''s sales'[amount])\n"
        "\t\t\t\t+ 1\n"
        "\t\t\t```\n"
        "\t\tformatString: 0\n\n"
        "\tcolumn amount\n\t\tdataType: int64\n\t\tsourceColumn: amount\n\n"
        "\t\tannotation SummarizationSetBy = User\n"
    )
    table = root.children[0]
    assert (table.kind, table.name, table.description) == ("table", "It's sales", "Sales, by day.")
    measure = table.all("measure")[0]
    assert measure.expression == "SUM('It''s sales'[amount])\n\t+ 1"
    assert measure.properties == {"formatString": "0"}
    assert table.all("column")[0].annotations == {"SummarizationSetBy": "User"}
    assert tmdl.split_reference("'It''s sales'.amount") == ("It's sales", "amount")
    assert tmdl.split_reference("Date.date") == ("Date", "date")


GOOD = "table T\n\tcolumn c\n\t\tdataType: int64\n\t\tsourceColumn: c\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("\t\tdataType", "        dataType"), "indent with tabs"),
        (GOOD.replace("dataType: int64", "dataType: float"), "dataType 'float' is not one of"),
        (GOOD.replace("dataType", "datatype"), "unknown property 'datatype'"),
        (GOOD + "\t\tdataType: string\n", "'dataType' given twice"),
        (GOOD.replace("\t\tsourceColumn", "\t\t\tsourceColumn"), "indentation jumps"),
        (GOOD + "\tmeasure m =\n\n\tcolumn d\n", "an expression must follow '='"),
        (GOOD + "\tmeasure m\n\t\tformatString: 0\n", "measure 'm' has no expression"),
        (GOOD + "\tmeasure m = ```\n\t\t\tSUM(T[c])\n", "``` not closed"),
        (GOOD + "\ttable U\n", "'table' cannot appear in table"),
        (GOOD + "\tpartition p = sql\n", "partition kind must be one of"),
        (GOOD + "\tpartition p = m\n\t\tsource: let a = 1 in a\n", "write 'source ='"),
        (GOOD + "column x\n", "'column' cannot appear in a file"),
        (GOOD + "/// dangling\n", "description at the end"),
        ("table T\n\tlineageTag:\n", "write 'lineageTag: <value>'"),
        ("model Model\n\tdataAccessOptions\n\t\tfastLane\n", "unknown option 'fastLane'"),
        ("ref table\n", "expected 'ref <type> <name>'"),
    ],
)
def test_refuses_broken_tmdl(text, message):
    with pytest.raises(tmdl.TmdlError, match=message):
        tmdl.parse(text, "broken.tmdl")


@pytest.mark.parametrize(
    ("rel", "old", "new", "message"),
    [
        ("definition/tables/Date.tmdl", "\t\tdataType: dateTime\n", "\t\tdataType: datetime\n",
         r"Date.tmdl:\d+: dataType 'datetime'"),
        ("definition/relationships.tmdl", "\ttoColumn: Date.date\n", "",
         "relationship without 'toColumn'"),
    ],
    ids=["table file", "relationship"],
)
def test_a_broken_model_file_stops_the_project_from_loading(broken_copy, rel, old, new, message):
    root = broken_copy({f"{MODEL.name}/{rel}": (old, new)})
    with pytest.raises(tmdl.TmdlError, match=message):
        load_model(root / MODEL.name)
