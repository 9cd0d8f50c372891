"""Best-practice and consistency rules on the semantic model, each shown to catch a broken copy."""

from __future__ import annotations

from . import rules
from .cases import broken, rule_tests

DEFINITION = "TrafficPlatform.SemanticModel/definition"
TABLES = f"{DEFINITION}/tables"
RELATIONSHIPS = f"{DEFINITION}/relationships.tmdl"
HOURLY = f"{TABLES}/Hourly counts.tmdl"
PAGES = "TrafficPlatform.Report/definition/pages"
VERSIONED_VEHICLES = (
    "CALCULATE(SUM('Hourly counts'[vehicles]), 'Model versions'[model_version] = _version)"
)

BROKEN = [
    broken(rules.syntax_problems, HOURLY,
           "SUM('Hourly counts'[vehicles])", "SUM('Hourly counts'[vehicles]",
           "measure Hourly counts[Vehicles]: DAX does not parse"),
    broken(rules.syntax_problems, HOURLY,
           "DIVIDE([Vehicles], [Images accepted])", "DIVIDE([Vehicles] +, 1)",
           "measure Hourly counts[Vehicles per image]: DAX does not parse"),
    broken(rules.syntax_problems, f"{TABLES}/Date.tmdl",
           "    Typed = Table", "    Typed = = Table",
           "partition Date/Date: M does not parse"),
    broken(rules.syntax_problems, f"{DEFINITION}/expressions.tmdl",
           '"localhost:3306" meta [', '"localhost:3306" meta [[',
           "expression Server: M does not parse"),
    broken(rules.divide_problems, HOURLY,
           "DIVIDE([Vehicles], [Images accepted])", "[Vehicles] / [Images accepted]",
           "measure Hourly counts[Vehicles per image] divides with '/'"),
    broken(rules.measure_metadata_problems, HOURLY,
           "\t\tformatString: #,0\n\t\tdisplayFolder: Counts\n", "\t\tdisplayFolder: Counts\n",
           "measure Hourly counts[Vehicles] has no formatString"),
    broken(rules.measure_metadata_problems, HOURLY,
           "\t\tdisplayFolder: Counts\n", "",
           "measure Hourly counts[Vehicles] has no displayFolder"),
    broken(rules.date_table_problems, f"{TABLES}/Date.tmdl",
           "\tdataCategory: Time\n", "",
           "0 tables have dataCategory: Time"),
    broken(rules.date_table_problems, f"{TABLES}/Date.tmdl",
           "\t\tisKey\n", "",
           "date table Date needs exactly one isKey column"),
    broken(rules.column_type_problems, HOURLY,
           "column car\n\t\tdataType: int64", "column car\n\t\tdataType: double",
           "Hourly counts[car] is double; v_traffic_counts_hourly_wide.car is integer -> int64"),
    broken(rules.column_type_problems, f"{TABLES}/Counts by class.tmdl",
           "sourceColumn: total_count", "sourceColumn: total",
           "v_traffic_counts_hourly documents no column 'total'"),
    broken(rules.reference_problems, HOURLY,
           "SUM('Hourly counts'[person])", "SUM('Hourly counts'[people])",
           "measure Hourly counts[Persons] names a missing column Hourly counts[people]"),
    broken(rules.reference_problems, HOURLY,
           "DIVIDE([Vehicles], [Images accepted])", "DIVIDE([Vehicle], [Images accepted])",
           "names a missing measure [Vehicle]"),
    broken(rules.reference_problems, f"{PAGES}/timePatterns/visuals/timeHourWeekday/visual.json",
           '"Property": "weekday_name"', '"Property": "weekday_label"',
           "visual timePatterns/timeHourWeekday names a missing column Date[weekday_label]"),
    broken(rules.reference_problems, f"{PAGES}/overview/visuals/overviewCard1/visual.json",
           '"Entity": "Hourly counts"', '"Entity": "Counts by class"',
           "visual overview/overviewCard1 names a missing measure Counts by class[Vehicles]"),
    broken(rules.reference_problems, f"{TABLES}/Date.tmdl",
           "sortByColumn: month\n", "sortByColumn: month_number\n",
           "Date[month_name] sorts by a missing column month_number"),
    broken(rules.relationship_problems, RELATIONSHIPS,
           "toColumn: Date.date", "toColumn: Date.year",
           "Date[year] is not a key column"),
    broken(rules.relationship_problems, RELATIONSHIPS,
           "toColumn: Date.date", "toColumn: Date.year",
           "dateTime joins int64"),
    broken(rules.version_rule_problems, HOURLY,
           VERSIONED_VEHICLES, "SUM('Hourly counts'[vehicles])",
           "measure Hourly counts[Vehicles] aggregates [('Hourly counts', 'vehicles')] without [Model version in use]"),
    broken(rules.version_rule_problems, RELATIONSHIPS,
           "toColumn: 'Model versions'.model_version", "toColumn: Date.date",
           "table Hourly counts has model_version but no relationship to Model versions"),
    broken(rules.partition_problems, f"{TABLES}/Locations.tmdl",
           "MySQL.Database(Server, Database", 'MySQL.Database("db.example", Database',
           "table Locations does not read MySQL.Database(Server, Database)"),
    broken(rules.partition_problems, f"{TABLES}/Locations.tmdl",
           "mode: import", "mode: directQuery",
           "table Locations: partition mode 'directQuery', not import"),
    broken(rules.partition_problems, f"{TABLES}/Locations.tmdl",
           'Item = "v_locations"', 'Item = "dim_locations"',
           "table Locations reads 'dim_locations', not one reporting view"),
    broken(rules.partition_problems, f"{DEFINITION}/expressions.tmdl",
           'IsParameterQuery = true, Type = "Text"', 'IsParameterQuery = false, Type = "Text"',
           "expression Server is not a text parameter"),
    broken(rules.m_type_problems, HOURLY,
           '{"car", Int64.Type}', '{"car", type number}',
           "Hourly counts[car] is int64; the M makes it type number"),
    broken(rules.m_type_problems, f"{TABLES}/Locations.tmdl",
           ', {"city", type text}', "",
           "Locations[city]: the M states no type for city"),
    broken(rules.m_type_problems, f"{TABLES}/Model versions.tmdl",
           "[computed_at]), type datetime", "[computed_at]), type text",
           "Model versions[first_computed_at] is dateTime; the M makes it type text"),
    broken(rules.table_file_problems, f"{DEFINITION}/model.tmdl",
           "ref table Locations\n", "",
           "model.tmdl refers to"),
]
test_rule_holds, test_rule_catches_a_broken_copy = rule_tests(rules.MODEL_RULES, BROKEN)


def test_count_columns_are_whole_numbers(project):
    """The README's integer columns (every count) are int64 in the model; none is double."""
    readme = rules.readme_column_types()
    checked = 0
    for t in project.model.tables.values():
        for c in t.columns.values():
            if readme.get(t.view() or "", {}).get(c.source_column or "") == "integer":
                assert c.data_type == "int64", f"{t.name}[{c.name}]"
                checked += 1
    assert checked >= 30
    counts = project.model.tables["Hourly counts"].columns
    assert {
        counts[c].data_type
        for c in (
            "car",
            "truck",
            "bus",
            "person",
            "bicycle",
            "motorcycle",
            "vehicles",
            "images_accepted",
        )
    } == {"int64"}


def test_the_model_has_the_measures_the_report_needs(project):
    measures = {m.name: m for m in project.model.measures()}
    for name in [
        "Vehicles",
        "Persons",
        "Bicycles",
        "Cars",
        "Trucks",
        "Buses",
        "Motorcycles",
        "Vehicles per image",
        "Mean per image",
        "Busiest hour",
        "Peak-hour factor",
        "Modal split %",
        "Vehicles change vs previous period",
        "Vehicles per image change vs previous period",
        "Distorted share",
        "Coverage",
        "Model version in use",
    ]:
        assert name in measures, name
    assert "DIVIDE(" in measures["Vehicles change vs previous period"].expression
    assert measures["Modal split %"].format_string == "0.0%"
    facts = {(r.from_table, r.to_table) for r in project.model.relationships}
    for fact in ("Hourly counts", "Counts by class"):
        assert {(fact, d) for d in ("Date", "Time of day", "Locations", "Model versions")} <= facts
    assert {("Data quality", "Date"), ("Data quality", "Locations")} <= facts
