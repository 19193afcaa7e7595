"""Bad input to the reader (issue 11, items 5-7): sharded files with other or missing headers,
label values and booleans as written, and every row either an example, a quarantine record or
a count (repeated files, duplicate rows and keys, unmatched optional joins, nulls, implausible
times). Expected values are written out by hand from the small files each test writes."""
import os
import unittest.mock

import apache_beam as beam
import tensorflow as tf
import yaml

from components import example_io, log_config, log_reader
from pipeline import report as report_lib
from tests.test_ingest import ingest, write

T0 = 1500000000  # 2017-07-14: a plausible unix time

FIELDS = [{"name": "user_id", "column": "user"}, {"name": "item_id", "column": "item"},
          {"name": "timestamp", "column": "ts", "type": "timestamp"}]


def own(log=None, label=None, **extra):
    """A config dict for a CSV log user,item,ts,clicked (plus `extra` top-level keys)."""
    return {"name": "own", "log": log or {"files": ["*.csv"]}, "fields": FIELDS,
            "label": label or {"column": "clicked", "positive": ["1"], "negative": ["0"]},
            **extra}


def rows_of(examples):
    return sorted((e["user_id"][0], e["item_id"][0], e["timestamp"][0], e["label"][0])
                  for e in examples)


class ShardTest(tf.test.TestCase):
    """Item 5: every file's header is read and checked before any work."""

    def _folder(self, **files):
        tmp = self.create_tempdir().full_path
        for name, text in files.items():
            write(tmp, name.replace("_", "-") + ".csv", text)
        return tmp

    def test_shards_with_columns_in_another_order_are_mapped_by_name(self):
        tmp = self._folder(a=f"user,item,ts,clicked\nu1,i1,{T0},1\n",
                           b=f"clicked,ts,item,user\n0,{T0 + 1},i2,u2\n1,{T0 + 2},i3,u3\n")
        examples, bad, stats = ingest(log_config.from_dict(own()), tmp,
                                      self.create_tempdir().full_path)
        self.assertEqual(rows_of(examples), [("u1", "i1", T0, 1), ("u2", "i2", T0 + 1, 0),
                                             ("u3", "i3", T0 + 2, 1)])
        self.assertEqual((bad, stats["rows"]), ([], 3))

    def test_a_shard_without_its_header_is_an_error_naming_it(self):
        tmp = self._folder(a=f"user,item,ts,clicked\nu1,i1,{T0},1\n",
                           b=f"u2,i2,{T0},0\nu3,i3,{T0},1\n",
                           c=f"user,item,ts,clicked\nu4,i4,{T0},1\n")
        with self.assertRaisesRegex(log_config.ConfigError,
                                    r"^log: .*/b.csv has no header line: its first line "
                                    rf"'u2,i2,{T0},0' names none of the columns"):
            log_reader.resolve(log_config.from_dict(own()), tmp)

    def test_missing_or_unknown_columns_are_errors_naming_file_and_columns(self):
        cases = [("user,item,ts\n", r"the header of .*/b.csv lacks column\(s\) \['clicked'\] "
                                    r"\(the header of .*/a.csv: "
                                    r"\['user', 'item', 'ts', 'clicked'\]\)"),
                 ("user,item,ts,clicked,price\n", r"b.csv has unknown column\(s\) \['price'\]"),
                 ("user,item,ts,click\n", r"lacks column\(s\) \['clicked'\] and has unknown "
                                          r"column\(s\) \['click'\]"),
                 ("user,item,ts,clicked,ts\n", r"the header of .*/b.csv names column\(s\) "
                                               r"\['ts'\] twice")]
        for header, message in cases:
            tmp = self._folder(a=f"user,item,ts,clicked\nu1,i1,{T0},1\n", b=header)
            with self.assertRaisesRegex(log_config.ConfigError, message):
                log_reader.resolve(log_config.from_dict(own()), tmp)

    def test_columns_given_with_a_header_must_match_its_width(self):
        tmp = self._folder(a=f"0,1,2\nu1,i1,{T0}\n")
        config = own(log={"files": ["*.csv"], "columns": ["user", "item", "ts", "clicked"]})
        with self.assertRaisesRegex(log_config.ConfigError, r"`columns` names 4 columns, the "
                                                            r"header of .*a.csv 3"):
            log_reader.resolve(log_config.from_dict(config), tmp)

    def test_renamed_columns_of_shards_in_another_order(self):
        # As douban: the header is "0,1,2,3", `columns` renames it; b.csv has it in another order.
        tmp = self._folder(a=f"0,1,2,3\nu1,i1,{T0},1\n", b=f"3,2,1,0\n0,{T0 + 1},i2,u2\n")
        config = own(log={"files": ["*.csv"], "columns": ["user", "item", "ts", "clicked"]})
        examples, bad, _ = ingest(log_config.from_dict(config), tmp,
                                  self.create_tempdir().full_path)
        self.assertEqual(rows_of(examples), [("u1", "i1", T0, 1), ("u2", "i2", T0 + 1, 0)])
        self.assertEqual(bad, [])

    def test_parquet_shards_are_checked_too(self):
        import pyarrow as pa  # pylint: disable=import-outside-toplevel
        import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
        tmp = self.create_tempdir().full_path
        pq.write_table(pa.Table.from_pylist([{"user": "u1", "item": "i1", "ts": T0, "clicked": 1}]),
                       os.path.join(tmp, "a.parquet"))
        pq.write_table(pa.Table.from_pylist([{"user": "u2", "item": "i2", "ts": T0}]),
                       os.path.join(tmp, "b.parquet"))
        config = own(log={"files": ["*.parquet"], "format": "parquet"})
        with self.assertRaisesRegex(log_config.ConfigError,
                                    r"the header of .*b.parquet lacks column\(s\) \['clicked'\]"):
            log_reader.resolve(log_config.from_dict(config), tmp)

    def test_a_tfrecord_row_without_a_column_is_quarantined(self):
        tmp = self.create_tempdir().full_path
        with tf.io.TFRecordWriter(os.path.join(tmp, "log.tfrecord")) as w:
            w.write(example_io.to_example({"user": "u1", "item": "i1", "ts": T0, "clicked": 1})
                    .SerializeToString())
            w.write(example_io.to_example({"user": "u2", "ts": T0, "clicked": 1})
                    .SerializeToString())
            w.write(example_io.to_example({"user": "u3", "item": "i3", "ts": T0, "clicked": []})
                    .SerializeToString())
        config = own(log={"files": ["*.tfrecord"], "format": "tfrecord"})
        examples, bad, stats = ingest(log_config.from_dict(config), tmp,
                                      self.create_tempdir().full_path)
        self.assertEqual(rows_of(examples), [("u1", "i1", T0, 1)])
        self.assertEqual([(r["line"], r["reason"], r["detail"]) for r in bad],
                         [(2, "empty_id", "item_id is missing (null)"),
                          (3, "bad_label", "clicked is missing (null)")])
        self.assertEqual(stats["rows"], 3)


class ConfigValuesTest(tf.test.TestCase):
    """Item 6: label values are the strings written; booleans and enumerations are checked."""

    def _load(self, text):
        return log_config.load(write(self.create_tempdir().full_path, "c.yaml", text))

    def test_yaml_label_values_stay_as_written(self):
        config = self._load(
            "name: own\nlog: {files: ['*.csv']}\n"
            "fields: [{name: user_id, column: user}, {name: item_id, column: item},\n"
            "         {name: timestamp, column: ts, type: timestamp}]\n"
            "label: {column: clicked, positive: [yes, 01, 1.0, on], negative: [no, off, ~]}\n")
        self.assertEqual((config.label.positive, config.label.negative),
                         (("yes", "01", "1.0", "on"), ("no", "off", "~")))
        tmp = self.create_tempdir().full_path
        write(tmp, "log.csv", "user,item,ts,clicked\n" + "".join(
            f"u{i},i{i},{T0},{v}\n" for i, v in enumerate(
                ["yes", "no", "01", "1", "1.0", "True", "off", "~"])))
        examples, bad, _ = ingest(config, tmp, self.create_tempdir().full_path)
        self.assertEqual([(e["user_id"][0], e["label"][0]) for e in examples],
                         [("u0", 1), ("u1", 0), ("u2", 1), ("u4", 1), ("u6", 0), ("u7", 0)])
        self.assertEqual([(r["line"], r["reason"]) for r in bad], [(5, "bad_label"),
                                                                   (7, "bad_label")])

    def test_yaml_names_stay_as_written(self):
        # douban's header is "0,1,2,3": an unquoted `column: 0` is the column named "0".
        config = self._load(
            "name: own\nlog: {files: ['*.csv']}\n"
            "fields: [{name: user_id, column: 1}, {name: item_id, column: 2},\n"
            "         {name: timestamp, column: 3, type: timestamp}]\n"
            "label: {column: 4, positive: [1], negative: [0]}\n")
        self.assertEqual([f.column for f in config.fields], ["1", "2", "3"])
        self.assertEqual(config.label.column, "4")

    def test_a_value_neither_positive_nor_negative_is_bad_unless_negative_other(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "log.csv", f"user,item,ts,clicked\nu1,i1,{T0},click\nu2,i2,{T0},view\n"
                              f"u3,i3,{T0},other\n")
        outcomes = {}
        for negative in (["view"], "other", ["other"]):
            config = log_config.from_dict(own(label={"column": "clicked", "positive": ["click"],
                                                     "negative": negative}))
            examples, bad, _ = ingest(config, tmp, self.create_tempdir().full_path)
            outcomes[str(negative)] = ([(e["user_id"][0], e["label"][0]) for e in examples],
                                       [(r["line"], r["reason"]) for r in bad])
        self.assertEqual(outcomes, {
            "['view']": ([("u1", 1), ("u2", 0)], [(4, "bad_label")]),
            "other": ([("u1", 1), ("u2", 0), ("u3", 0)], []),
            "['other']": ([("u1", 1), ("u3", 0)], [(3, "bad_label")])})

    def test_wrong_types_and_values_are_one_line_errors(self):
        log = {"files": ["*.csv"]}
        timestamp = {"name": "timestamp", "column": "ts", "type": "timestamp"}
        cases = [
            (own(label={"column": "clicked", "positive": [True], "negative": [False]}),
             r"label: positive value True is not a string: quote it \(e.g. positive: \[\"true\"\]"),
            (own(label={"column": "clicked", "positive": ["1"]}),
             "list the `negative` values, or say `negative: other`"),
            (own(label={"column": "clicked", "positive": ["1"], "negative": ["1", "0"]}),
             r"\['1'\] are both positive and negative"),
            (own(label={"column": "clicked", "threshold": "4"}), "`threshold` must be a number"),
            (own(label={"column": "r", "threshold": 4, "range": [5]}), "`range` must be"),
            (own(label={"column": "r", "positive": ["1"], "negative": ["0"], "range": [0, 1]}),
             "`range` goes with `threshold`"),
            (own(label={"implicit": "false", "column": "c", "positive": ["1"]}),
             "label: `implicit` must be true or false, not 'false'"),
            (own(log={**log, "header": "false"}),
             "log: `header` must be true or false, not 'false'"),
            (own(log={**log, "header": 0}), "`header` must be true or false, not 0"),
            (own(dedupe="no"), "config: `dedupe` must be true or false, not 'no'"),
            (own(joins=[{"files": ["i.csv"], "key": "item", "log_key": "item", "required": "no"}]),
             r"joins\[0\]: `required` must be true or false"),
            (own(log={**log, "required": False}), "are for joins only"),
            (own(log={**log, "columns": "user,item"}), "`columns` must be a list of strings"),
            (own(log={**log, "columns": ["a", "a"]}), "names a column twice"),
            (own(log={**log, "encoding": "utf-9"}), "unknown encoding 'utf-9'"),
            (own(log={**log, "sep": ""}), "`sep` must not be empty"),
            (own(log={**log, "format": "CSV"}), "format 'CSV' is not one of"),
            (own(split={"N": True}), "split: `N` must be an integer, not True"),
            (own(split={"K": "20"}), "`K` must be an integer"),
            (own(side_info="item_id"), "`side_info` must be a list of strings"),
            (own(negatives={"per_positive": 1}), "for `label: {implicit: true}` only"),
            (own(label={"implicit": True}, negatives={"per_positive": 1, "seed": -1}),
             "`seed` must be >= 0"),
            (own(label={"implicit": True}, negatives={"per_positive": 1, "sampling": "random"}),
             "sampling 'random' is not one of popularity, uniform, matched"),
            ({**own(), "fields": FIELDS[:2] + [{**timestamp, "range": ["2000-01-01"]}]},
             r"`range` must be \[from, to\]"),
            ({**own(), "fields": FIELDS[:2] + [{**timestamp, "range": ["2001-01-01", "2000"]}]},
             "'2000' is neither unix seconds nor a YYYY-MM-DD date"),
            ({**own(), "fields": FIELDS + [{"name": "x", "required": "yes"}]},
             "field x: `required` must be true or false"),
            ({**own(), "fields": FIELDS + [{"name": "x", "role": "items"}]},
             "field x: role 'items' is not one of"),
            ({**own(), "fields": FIELDS + [{"name": "x", "extract": "[0-9]+"}]},
             "`extract` needs a group"),
            ({**own(), "fields": FIELDS + [{"name": "x", "strip": "("}]}, "not a valid regex"),
            ({**own(), "fields": FIELDS + [{"name": "x", "max_len": "8"}]},
             "`max_len` must be an integer"),
            ({**own(), "fields": FIELDS + [{"name": "x", "default": 0}]},
             r"`default` must be a string \(quote it\), not 0"),
            ({**own(), "fields": FIELDS + [{"name": "x", "format": "%Y"}]},
             "for timestamp fields only"),
            ({**own(), "fields": FIELDS + [{"name": 7}]}, "`name` must be a string"),
        ]
        for raw, message in cases:
            with self.assertRaisesRegex(log_config.ConfigError, message, msg=str(raw)) as ctx:
                log_config.from_dict(raw)
            self.assertNotIn("\n", str(ctx.exception))

    def test_a_yaml_key_given_twice_is_an_error(self):
        with self.assertRaisesRegex(log_config.ConfigError,
                                    r"c.yaml: label: key\(s\) \['positive'\] given twice \(line 2\)"):
            self._load("name: own\nlabel: {column: c, positive: [a], negative: [b],\n"
                       "        positive: [c]}\n")

    def test_yaml_header_false_as_a_string_fails_at_load(self):
        with self.assertRaisesRegex(log_config.ConfigError,
                                    r"c.yaml: log: `header` must be true or false, not 'false'"):
            self._load(yaml.safe_dump(own(log={"files": ["*.csv"], "header": "false"})))


class CountedTest(tf.test.TestCase):
    """Item 7: what is read but not turned into one example per row is counted."""

    def test_a_file_matched_by_two_patterns_is_read_once_and_counted(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "log1.csv", f"user,item,ts,clicked\nu1,i1,{T0},1\n")
        write(tmp, "log2.csv", f"user,item,ts,clicked\nu2,i2,{T0},0\n")
        config = log_config.from_dict(own(log={"files": ["log*.csv", "log1.csv"]}))
        examples, _, stats = ingest(config, tmp, self.create_tempdir().full_path)
        self.assertEqual(rows_of(examples), [("u1", "i1", T0, 1), ("u2", "i2", T0, 0)])
        self.assertEqual((stats["rows"], stats["duplicate_files"]), (2, 1))

    def test_exact_duplicate_rows_are_dropped_or_kept_and_counted(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "a.csv", f"user,item,ts,clicked\nu1,i1,{T0},1\nu1,i1,{T0},0\nu1,i1,{T0},1\n"
                            f"u2,i1,{T0},1\n")
        write(tmp, "b.csv", f"clicked,user,item,ts\n1,u1,i1,{T0}\n1,u2,i1,{T0 + 1}\n")
        results = {}
        for dedupe in (True, False):
            config = log_config.from_dict(own(dedupe=dedupe))
            examples, _, stats = ingest(config, tmp, self.create_tempdir().full_path)
            results[dedupe] = (rows_of(examples), stats["rows"], stats["examples"],
                               stats["duplicate_rows"], stats["dropped_duplicates"])
        # u1,i1,T0,1 is on a.csv lines 2 and 4 and b.csv line 2 (columns in another order).
        kept = [("u1", "i1", T0, 0), ("u1", "i1", T0, 1), ("u2", "i1", T0, 1),
                ("u2", "i1", T0 + 1, 1)]
        self.assertEqual(results[True], (kept, 6, 4, 2, 2))
        self.assertEqual(results[False], (sorted(kept + [("u1", "i1", T0, 1)] * 2), 6, 6, 2, 0))

    def test_dedupe_keeps_the_first_copy_by_file_and_line_within_a_bucket(self):
        files = ["/logs/b.csv", "/logs/a.csv"]
        same = {"user": "u1", "item": "i1"}
        rows = [("/logs/b.csv", 2, 0, dict(same), "u1,i1"), ("/logs/a.csv", 4, 0, dict(same), "x"),
                ("/logs/a.csv", 2, 0, {"item": "i1", "user": "u1"}, "u1,i1"),
                ("/logs/a.csv", 3, 0, {"user": "u2", "item": "i1"}, "u2,i1")]
        with unittest.mock.patch.object(log_reader, "BUCKET_BYTES", 0):  # one bucket for all
            keyed = [log_reader.RowDigest(files)(row) for row in rows]
        self.assertEqual({key for key, _ in keyed}, {b""})
        for drop in (True, False):
            out = list(log_reader.Dedupe(drop, files).process((b"", [v for _, v in keyed])))
            kept = sorted(o for o in out if not isinstance(o, beam.pvalue.TaggedOutput))
            duplicates = sorted(o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput))
            self.assertEqual(duplicates, ["/logs/a.csv", "/logs/b.csv"])
            self.assertEqual(kept, sorted([rows[2], rows[3]] if drop else rows))

    def test_side_table_duplicate_keys_and_unmatched_optional_joins(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "log.csv", f"user,item,ts,clicked\nu1,i1,{T0},1\nu2,i2,{T0},0\n"
                              f"u3,i9,{T0},1\nu4,i8,{T0},0\n")
        write(tmp, "items.tsv", "item\tbrand\ni1\tb1\ni2\tb2\ni1\tb1\ni2\tb7\n\tb0\n")
        config = log_config.from_dict({
            **own(log={"files": ["log.csv"]}),
            "joins": [{"files": ["items.tsv"], "format": "tsv", "key": "item", "log_key": "item",
                       "required": False}],
            "fields": FIELDS + [{"name": "brand", "role": "item"}]})
        examples, bad, stats = ingest(config, tmp, self.create_tempdir().full_path)
        self.assertEqual(sorted((e["item_id"][0], e["brand"][0]) for e in examples),
                         [("i1", "b1"), ("i2", "b2"), ("i8", ""), ("i9", "")])
        path = os.path.join(tmp, "items.tsv")
        self.assertEqual([(r["file"], r["line"], r["reason"], r["detail"]) for r in bad], [
            (path, 5, "duplicate_key", "item='i2' is also at line 3 of " + path +
             ", with other values"),
            (path, 6, "empty_id", "item is empty")])
        self.assertEqual((stats["identical_side_rows"], stats["unmatched"], stats["quarantined"]),
                         (1, {"joins[0] items.tsv": 2}, 2))

    def test_a_repeated_key_of_a_json_map_is_not_silently_overwritten(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "log.txt", "u1 10 11\n")
        write(tmp, "attributes.json", '{"10": [1, 2], "11": [3], "10": [4]}')
        config = log_config.from_dict({
            "name": "seq", "log": {"files": ["log.txt"], "format": "sequences",
                                   "columns": ["user", "item"]},
            "joins": [{"files": ["attributes.json"], "format": "json_map",
                       "columns": ["item", "attributes"], "key": "item", "log_key": "item"}],
            "fields": [{"name": "user_id", "column": "user"},
                       {"name": "item_id", "column": "item", "role": "item"},
                       {"name": "attributes", "type": "multi", "sep": " ", "role": "item"},
                       {"name": "timestamp", "column": "position", "type": "timestamp"}],
            "label": {"implicit": True}, "negatives": {"per_positive": 1}})
        examples, bad, _ = ingest(config, tmp, self.create_tempdir().full_path)
        self.assertEqual(sorted((e["item_id"][0], e["attributes"]) for e in examples
                                if e["label"] == (1,)), [("10", ("1", "2")), ("11", ("3",))])
        self.assertEqual([(r["line"], r["reason"]) for r in bad], [(3, "duplicate_key")])

    def test_parquet_nulls_are_missing_not_the_empty_category(self):
        import pyarrow as pa  # pylint: disable=import-outside-toplevel
        import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
        tmp = self.create_tempdir().full_path
        rows = [{"user": "u1", "item": "i1", "ts": T0, "clicked": 1, "brand": "", "shop": None,
                 "price": None, "tags": None},
                {"user": "u2", "item": "i2", "ts": T0, "clicked": 0, "brand": None, "shop": "s",
                 "price": 2.0, "tags": "a|b"},
                {"user": "u3", "item": None, "ts": T0, "clicked": 0, "brand": "b", "shop": "s",
                 "price": 1.0, "tags": ""},
                {"user": "u4", "item": "i4", "ts": None, "clicked": 0, "brand": "b", "shop": "s",
                 "price": 1.0, "tags": ""},
                {"user": "u5", "item": "i5", "ts": T0, "clicked": None, "brand": "b", "shop": "s",
                 "price": 1.0, "tags": ""}]
        pq.write_table(pa.Table.from_pylist(rows), os.path.join(tmp, "log.parquet"))
        config = log_config.from_dict({
            **own(log={"files": ["log.parquet"], "format": "parquet"}),
            "fields": FIELDS + [{"name": "brand", "role": "item"},
                                {"name": "shop", "role": "item", "default": "unknown"},
                                {"name": "price", "type": "numeric", "default": -1},
                                {"name": "tags", "type": "multi"}]})
        examples, bad, _ = ingest(config, tmp, self.create_tempdir().full_path)
        self.assertEqual([(e["user_id"], e["brand"], e["shop"], e["price"], e["tags"])
                          for e in examples], [(("u1",), ("",), ("unknown",), (-1.0,), ())])
        self.assertEqual([(r["line"], r["reason"], r["detail"]) for r in bad], [
            (2, "missing_value", "brand is missing (null) and has no default"),
            (3, "empty_id", "item_id is missing (null)"),
            (4, "missing_value", "timestamp is missing (null) and has no default"),
            (5, "bad_label", "clicked is missing (null)")])

    def test_implausible_timestamps_are_quarantined(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "log.csv", "user,item,ts,clicked\n" + "".join(
            f"u{i},i1,{t},1\n" for i, t in enumerate([0, 631151999, 631152000, T0,
                                                       4102444800, 978300760000])))
        examples, bad, _ = ingest(log_config.from_dict(own()), tmp,
                                  self.create_tempdir().full_path)
        # 1990-01-01 00:00 UTC = 631152000; 2100-01-01 = 4102444800; the last is in milliseconds.
        self.assertEqual([e["user_id"][0] for e in examples], ["u2", "u3"])
        self.assertEqual([(r["line"], r["reason"]) for r in bad],
                         [(2, "implausible_timestamp"), (3, "implausible_timestamp"),
                          (6, "implausible_timestamp"), (7, "implausible_timestamp")])
        self.assertEqual(bad[0]["detail"], "timestamp 0 (1970-01-01) is outside 1990-01-01 .. "
                         + log_config.time.strftime("%Y-%m-%d", log_config.time.gmtime(
                             log_config.timestamp_range(log_config.from_dict(own()))[1]))
                         + " (field `range`)")
        ranged = own()
        ranged["fields"] = FIELDS[:2] + [{**FIELDS[2], "range": [0, "2100-01-01"]}]
        examples, bad, _ = ingest(log_config.from_dict(ranged), tmp,
                                  self.create_tempdir().full_path)
        self.assertEqual([e["user_id"][0] for e in examples], ["u0", "u1", "u2", "u3", "u4"])
        self.assertEqual([(r["line"], r["reason"]) for r in bad], [(7, "implausible_timestamp")])

    def test_line_number_times_have_no_plausible_range(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "log.csv", "user,item,clicked\nu1,i1,1\nu2,i2,0\n")
        config = log_config.from_dict({**own(), "fields": FIELDS[:2] + [
            {"name": "timestamp", "column": "_line", "type": "timestamp"}]})
        self.assertIsNone(log_config.timestamp_range(config))
        examples, bad, _ = ingest(config, tmp, self.create_tempdir().full_path)
        self.assertEqual((rows_of(examples), bad), ([("u1", "i1", 2, 1), ("u2", "i2", 3, 0)], []))


class ReportTest(tf.test.TestCase):

    def test_report_md_names_the_counts(self):
        report = {"dataset": "own", "backbone": "deepfm", "N": 10, "K": 2, "runs": 1, "seeds": [0],
                  "splits": {k: 0 for k in ("base", "warm_a", "warm_b", "warm_c", "test",
                                            "dropped", "old_items", "new_items",
                                            "dropped_items")},
                  "methods": {},
                  "ingest": {"rows": 12, "examples": 8, "negatives": 0, "duplicate_files": 1,
                             "duplicate_rows": 3, "dropped_duplicates": 3,
                             "identical_side_rows": 0, "unmatched": {"joins[0] items.csv": 2}},
                  "quarantined": {"rows": 1, "by_reason": {"duplicate_key": 1}, "path": "q"}}
        self.assertEqual(report_lib.render_markdown(report).splitlines()[-1],
                         "Input: 12 rows, 8 examples (0 sampled negatives); 1 rows quarantined "
                         "(duplicate_key 1): `q`. Counted: 1 input files matched twice (read "
                         "once); 3 exact duplicate log rows; 3 of them dropped (dedupe); 2 "
                         "examples without a match in joins[0] items.csv.")
        report["ingest"]["negatives"] = 4
        report["config"] = {"dataset": {"negative_sampling": "din"}}
        self.assertStartsWith(report_lib.render_markdown(report).splitlines()[-1],
                              "Input: 12 rows, 8 examples (4 sampled negatives, rule `din`); ")
