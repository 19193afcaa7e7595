"""Click-log ingestion: configs, row parsing, the Beam reader with its quarantine, and every
built-in data set's reader on hand-written or real fixtures."""
import gzip
import json
import os

import apache_beam as beam
import tensorflow as tf
import yaml

from components import example_gen, example_io, log_config, log_reader
import schemas

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets")

ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"
ML1M_MOVIES = ("1::Toy Story (1995)::Animation|Children's|Comedy\n"
               "2::Caf\xe9 au lait (Gazon maudit) (1995)::Comedy\n"
               "5::Seven (Se7en) (1995)::Crime|Thriller\n")
ML1M_RATINGS = "1::1::5::978300760\n2::2::3::978302109\n1::5::4::978301968\n"


def write(directory, name, text, encoding="utf-8", gz=False):
    path = os.path.join(directory, name)
    data = text if isinstance(text, bytes) else text.encode(encoding)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)
    return path


def builtin(name):
    return log_config.load(schemas.config_path(name))


def sequence_config(sampling, seed):
    """An implicit log of user sequences in `log.txt`, one sampled negative per positive."""
    return log_config.from_dict({
        "name": "seq", "log": {"files": ["log.txt"], "format": "sequences",
                               "columns": ["user", "item"]},
        "fields": [{"name": "user_id", "column": "user"},
                   {"name": "item_id", "column": "item", "role": "item"},
                   {"name": "timestamp", "column": "position", "type": "timestamp"}],
        "label": {"implicit": True},
        "negatives": {"per_positive": 1, "seed": seed, "sampling": sampling}})


def ingest(config, folder, tmp, keep_examples=True):
    """Runs the reader; returns (examples as {name: tuple}, quarantine records, stats)."""
    config = log_reader.resolve(config, folder)
    out = os.path.join(tmp, "out")
    with beam.Pipeline() as p:
        examples, bad, stats = p | log_reader.ReadClickLog(config, folder)  # pylint: disable=no-value-for-parameter
        if not keep_examples:
            examples = examples | beam.Filter(lambda e: False)
        _ = (examples | beam.Map(lambda e: json.dumps(
            {k: [v.decode() if isinstance(v, bytes) else v for v in vs]
             for k, vs in example_io.from_example(tf.train.Example.FromString(e)).items()}))
             | "W1" >> beam.io.WriteToText(out + "-examples"))
        _ = bad | "J2" >> beam.Map(json.dumps) | "W2" >> beam.io.WriteToText(out + "-bad")
        _ = stats | "J3" >> beam.Map(json.dumps) | "W3" >> beam.io.WriteToText(out + "-stats")

    def lines(suffix):
        return [json.loads(line) for path in sorted(tf.io.gfile.glob(f"{out}-{suffix}*"))
                for line in open(path)]
    examples = [{k: tuple(v) for k, v in e.items()} for e in lines("examples")]
    return (sorted(examples, key=lambda e: sorted(e.items())),
            sorted(lines("bad"), key=lambda r: (r["file"], r["line"])), lines("stats")[0])


class ConfigTest(tf.test.TestCase):

    def test_every_builtin_config_loads_and_its_schema_is_the_generated_one(self):
        self.assertEqual(schemas.builtin(), ["amazon-beauty", "cikm", "douban", "ml-100k", "ml-1m",
                                             "tafeng", "taobao", "taobao-joined"])
        for name in schemas.builtin():
            with open(schemas.schema_path(name)) as f:
                self.assertEqual(f.read(), schemas.schema_text(builtin(name)), name)

    def test_json_round_trip(self):
        config = builtin("taobao")
        self.assertEqual(log_config.from_json(json.dumps(config.to_dict())), config)

    def test_feature_config_of_ml1m_is_the_model_layout(self):
        from trainer import features  # pylint: disable=import-outside-toplevel
        self.assertEqual(features.from_dataset(builtin("ml-1m").to_dict()), features.MOVIELENS)

    def test_errors_name_the_problem(self):
        base = yaml.safe_load(open(schemas.config_path("douban")))
        cases = [
            ({"fields": base["fields"][1:]}, "a field named 'user_id' is required"),
            ({"label": {"column": "label"}}, "give exactly one rule"),
            ({"label": {"implicit": True}}, "needs `negatives"),
            ({"log": {**base["log"], "format": "xlsx"}}, "format 'xlsx' is not one of"),
            ({"log": {**base["log"], "sepp": ","}}, r"unknown key\(s\) \['sepp'\]"),
            ({"fields": base["fields"] + [{"name": "x", "type": "float"}]}, "type 'float'"),
            ({"side_info": ["user_id"]}, "'user_id' is not a field with role item"),
            ({"joins": [{"files": ["a.csv"], "key": "item"}]}, "a join needs `key`"),
            ({"file_field": "item_id"}, "file_field 'item_id' is already a feature's name"),
            ({"file_field": "hist_file"}, "file_field 'hist_file' is already a feature's name"),
            ({"file_field": ""}, "`file_field` must name a feature, not be empty"),
            ({"file_field": ["f"]}, "`file_field` must be a string"),
        ]
        for change, message in cases:
            with self.assertRaisesRegex(log_config.ConfigError, message):
                log_config.from_dict({**base, **change})

    def test_yaml_file_errors(self):
        path = write(self.create_tempdir().full_path, "c.yaml", "name: [unclosed\n")
        with self.assertRaisesRegex(log_config.ConfigError, "c.yaml: not valid YAML") as ctx:
            log_config.load(path)
        self.assertNotIn("\n", str(ctx.exception))  # one line


class ParseTest(tf.test.TestCase):

    def _ml1m_row(self, rating_line, user_line, movie_line):
        config = builtin("ml-1m")
        log, users, movies = config.log, *config.joins
        row = log_config.split_line(rating_line, log, log.columns)
        tables = [{u["user"]: u} for u in [log_config.split_line(user_line, users, users.columns)]] + \
                 [{m["item"]: m} for m in [log_config.split_line(movie_line, movies, movies.columns)]]
        return log_config.parse_row(log_config.join(row, tables, config), config)

    def test_ml1m_row(self):
        self.assertEqual(
            self._ml1m_row("2::5::3::978300760", "2::M::56::16::70072",
                           "5::Seven (Se7en) (1995)::Crime|Thriller"),
            {"user_id": "2", "gender": "M", "age": "56", "occupation": "16", "zip_code": "70072",
             "item_id": "5", "year": "1995", "title": ["Seven", "Se7en"],
             "genres": ["Crime", "Thriller"], "timestamp": 978300760, "label": 0})

    def test_field_types(self):
        f = log_config.FieldSpec
        self.assertEqual(log_config.parse_field(" 3.5 ", f("p", "p", type="numeric")), 3.5)
        self.assertEqual(log_config.parse_field("", f("p", "p", type="numeric", default=0)), 0.0)
        self.assertEqual(log_config.parse_field("2017-05-06 00:00:10", f(
            "t", "t", type="timestamp", format="%Y-%m-%d %H:%M:%S")), 1494028810)
        self.assertEqual(log_config.parse_field("978300760.0", f("t", "t", type="timestamp")),
                         978300760)
        self.assertEqual(log_config.parse_field("a^^b^", f("s", "s", type="multi", sep="^")),
                         ["a", "b"])
        self.assertEqual(log_config.parse_field("", f("c", "c")), "")  # empty category is a value

    def test_bad_cells_say_why(self):
        f = log_config.FieldSpec
        cases = [
            (lambda: log_config.split_line("1::2::3", builtin("ml-1m").log, ("a", "b", "c", "d")),
             "field_count", "expected 4 fields separated by '::', got 3"),
            (lambda: log_config.parse_field("x1", f("price", "price", type="numeric")),
             "bad_number", "price is not a number: 'x1'"),
            (lambda: log_config.parse_field("nan", f("price", "price", type="numeric")),
             "bad_number", "not finite"),
            (lambda: log_config.parse_field("", f("price", "price", type="numeric")),
             "bad_number", "price is empty"),
            (lambda: log_config.parse_field("yesterday", f("t", "t", type="timestamp")),
             "bad_timestamp", "t is not a unix time: 'yesterday'"),
            (lambda: log_config.parse_field("6/31/2000", f("t", "t", type="timestamp",
                                                           format="%m/%d/%Y")),
             "bad_timestamp", "does not match '%m/%d/%Y'"),
            (lambda: log_config.parse_field(" ", f("item_id", "i", required=True)),
             "empty_id", "item_id is empty"),
            (lambda: log_config.decode(b"caf\xe9", "utf-8"), "bad_encoding", "not utf-8 at byte 3"),
            (lambda: log_config.parse_label({"r": "9"}, log_config.LabelSpec("r", threshold=4,
                                                                            range=(1, 5))),
             "bad_label", r"r=9 outside \[1, 5\]"),
            (lambda: log_config.parse_label({"clk": "2"}, log_config.LabelSpec(
                "clk", positive=("1",), negative=("0",))), "bad_label", r"clk='2' is not one of"),
        ]
        for call, reason, message in cases:
            with self.assertRaisesRegex(log_config.BadRow, message) as ctx:
                call()
            self.assertEqual(ctx.exception.reason, reason)


class ReaderTest(tf.test.TestCase):

    def _ml1m(self, ratings, gz=True):
        tmp = self.create_tempdir().full_path
        write(tmp, "users.dat", ML1M_USERS)
        write(tmp, "movies.dat", ML1M_MOVIES, encoding="latin-1")
        write(tmp, "ratings.dat.gz" if gz else "ratings.dat", ratings, gz=gz)
        return tmp

    def test_ml1m_gzip_latin1_and_every_bad_row_quarantined_with_its_line(self):
        bad_lines = [b"1::1::5\n", b"1::1::five::978300760\n", b"1::1::4::yesterday\n",
                     b"::1::4::978300760\n", b"1::1::9::978300760\n", b"1::77::4::978300760\n",
                     b"\xff\xfe::1::4::978300760\n"]
        good = ML1M_RATINGS.encode()
        folder = self._ml1m(good[:19] + b"".join(bad_lines) + good[19:])
        examples, bad, stats = ingest(builtin("ml-1m"), folder, self.create_tempdir().full_path)
        self.assertEqual([(e["user_id"], e["item_id"], e["label"]) for e in examples],
                         [(("1",), ("1",), (1,)), (("1",), ("5",), (1,)), (("2",), ("2",), (0,))])
        cafe = [e for e in examples if e["item_id"] == ("2",)][0]
        self.assertEqual(cafe["title"], ("Café", "au", "lait", "Gazon", "maudit"))
        self.assertEqual(cafe["timestamp"], (978302109,))
        path = os.path.join(folder, "ratings.dat.gz")
        self.assertEqual([(r["file"], r["line"], r["reason"]) for r in bad], [
            (path, 2, "field_count"), (path, 3, "bad_label"),
            (path, 4, "bad_timestamp"), (path, 5, "empty_id"), (path, 6, "bad_label"),
            (path, 7, "unknown_key"), (path, 8, "bad_encoding")])
        self.assertEqual(bad[0]["raw"], "1::1::5")
        self.assertEqual(bad[1]["detail"], "rating is not a number: 'five'")
        self.assertEqual(bad[5]["detail"], "item='77' is not in movies.dat")
        self.assertEqual(bad[6]["raw"], "\ufffd\ufffd::1::4::978300760")
        self.assertEqual(stats, {"rows": 10, "examples": 3, "negatives": 0, "quarantined": 7,
                                 "by_reason": {"bad_encoding": 1, "bad_label": 2,
                                               "bad_timestamp": 1, "empty_id": 1,
                                               "field_count": 1, "unknown_key": 1},
                                 "duplicate_files": 0, "duplicate_rows": 0,
                                 "dropped_duplicates": 0, "identical_side_rows": 0,
                                 "unmatched": {}})

    def test_threshold(self):
        stats = {"rows": 1000, "examples": 990, "quarantined": 10, "by_reason": {"field_count": 10}}
        with self.assertRaisesRegex(example_gen.TooManyBadRows,
                                    r"10 of 1,000 input rows \(1.00 %\) are bad, above the threshold"
                                    r" of 0.1 % \(field_count: 10\).* in /q/bad-\*.jsonl"):
            example_gen.check_bad_fraction(stats, 0.001, "/q/bad-*.jsonl")
        example_gen.check_bad_fraction(stats, 0.01, "/q")  # exactly at the threshold passes
        with self.assertRaisesRegex(example_gen.TooManyBadRows, "no usable rows"):
            example_gen.check_bad_fraction({**stats, "examples": 0}, 1.0, "/q")

    def test_errors_before_any_work(self):
        config = builtin("ml-1m")
        tmp = self.create_tempdir().full_path
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            log_reader.resolve(config, os.path.join(tmp, "nope"))
        with self.assertRaisesRegex(FileNotFoundError, r"no input file matches .*ratings.dat\*"):
            log_reader.resolve(config, tmp)
        folder = self._ml1m(b"", gz=False)
        with self.assertRaisesRegex(log_config.ConfigError, r"log: input file .*ratings.dat is empty"):
            log_reader.resolve(config, folder)
        csv_dir = self.create_tempdir().full_path
        write(csv_dir, "log.csv", "user,item,ts,clicked\n1,2,3,1\n")
        raw = {"name": "own", "log": {"files": ["*.csv"]}, "label": {"column": "clicked",
                                                                      "threshold": 1},
               "fields": [{"name": "user_id", "column": "user"}, {"name": "item_id", "column": "itm"},
                          {"name": "timestamp", "column": "ts", "type": "timestamp"}]}
        with self.assertRaisesRegex(log_config.ConfigError,
                                    r"reads column 'itm', which no input has; columns: "
                                    r"\['clicked', 'item', 'ts', 'user'\]"):
            log_reader.resolve(log_config.from_dict(raw), csv_dir)

    def test_file_field_names_each_rows_file(self):
        folder = self.create_tempdir().full_path
        write(folder, "a_train.csv", "user,item,ts,clicked\nu1,i1,5,1\nu2,i2,6,0\n")
        os.makedirs(os.path.join(folder, "more"))
        write(os.path.join(folder, "more"), "b_test.csv", "user,item,ts,clicked\nu1,i2,7,1\n")
        raw = {"name": "own", "log": {"files": ["*.csv", "more/*.csv"]},
               "label": {"column": "clicked", "positive": ["1"], "negative": ["0"]},
               "fields": [{"name": "user_id", "column": "user"}, {"name": "item_id", "column": "item"},
                          {"name": "timestamp", "column": "ts", "type": "timestamp",
                           "range": [0, 10]}],
               "file_field": "source_file"}
        examples, bad, _ = ingest(log_config.from_dict(raw), folder,
                                  self.create_tempdir().full_path)
        self.assertEqual(bad, [])
        self.assertEqual(sorted((e["user_id"][0], e["item_id"][0], e["source_file"][0])
                                for e in examples),
                         [("u1", "i1", "a_train.csv"), ("u1", "i2", "b_test.csv"),
                          ("u2", "i2", "a_train.csv")])
        without = ingest(log_config.from_dict({k: v for k, v in raw.items() if k != "file_field"}),
                         folder, self.create_tempdir().full_path)[0]
        self.assertEqual([sorted(e) for e in without], [["item_id", "label", "timestamp",
                                                         "user_id"]] * 3)

    def test_generic_csv_parquet_and_tfrecord_give_the_same_examples(self):
        import pyarrow as pa  # pylint: disable=import-outside-toplevel
        import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
        rows = [{"user": "u1", "item": "i1", "ts": 1500000010, "tags": "a|b", "price": 1.5, "clicked": 1},
                {"user": "u2", "item": "i1", "ts": 1500000011, "tags": "", "price": 0.5, "clicked": 0}]
        raw = {"name": "own", "label": {"column": "clicked", "positive": ["1"], "negative": ["0"]},
               "fields": [{"name": "user_id", "column": "user"},
                          {"name": "item_id", "column": "item"},
                          {"name": "tags", "type": "multi", "role": "item"},
                          {"name": "price", "type": "numeric", "role": "item"},
                          {"name": "timestamp", "column": "ts", "type": "timestamp"}]}
        results = []
        for fmt in ("csv", "parquet", "tfrecord"):
            tmp = self.create_tempdir().full_path
            if fmt == "csv":
                write(tmp, "log.csv", "user,item,ts,tags,price,clicked\n" + "".join(
                    f"{r['user']},{r['item']},{r['ts']},{r['tags']},{r['price']},{r['clicked']}\n"
                    for r in rows))
            elif fmt == "parquet":
                pq.write_table(pa.Table.from_pylist(rows), os.path.join(tmp, "log.parquet"))
            else:
                with tf.io.TFRecordWriter(os.path.join(tmp, "log.tfrecord")) as w:
                    for r in rows:
                        w.write(example_io.to_example(r).SerializeToString())
            config = log_config.from_dict({**raw, "log": {"files": [f"log.{fmt}"], "format": fmt}})
            examples, bad, stats = ingest(config, tmp, self.create_tempdir().full_path)
            self.assertEqual((bad, stats["examples"]), ([], 2))
            results.append(sorted(examples, key=lambda e: e["user_id"]))
        self.assertEqual(results[0], results[1])
        self.assertEqual(results[0], results[2])
        self.assertEqual(results[0][0], {"user_id": ("u1",), "item_id": ("i1",), "tags": ("a", "b"),
                                         "price": (1.5,), "timestamp": (1500000010,), "label": (1,)})
        self.assertEqual(results[0][1]["tags"], ())

    def test_sequences_with_sampled_negatives(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "s3rec_Beauty.txt", "1 10 11 12\n2 11 13\n3 14\n")
        write(tmp, "s3rec_Beauty_item2attributes.json",
              json.dumps({"10": [1, 2], "11": [3], "12": [4], "13": [5], "14": [6, 7]}))
        runs = [ingest(builtin("amazon-beauty"), tmp, self.create_tempdir().full_path)
                for _ in range(2)]
        self.assertEqual(runs[0], runs[1])  # deterministic
        examples, bad, stats = runs[0]
        self.assertEqual((bad, stats["rows"], stats["negatives"], stats["examples"]), ([], 6, 6, 12))
        positives = {(e["user_id"][0], e["item_id"][0], e["timestamp"][0])
                     for e in examples if e["label"] == (1,)}
        self.assertEqual(positives, {("1", "10", 0), ("1", "11", 1), ("1", "12", 2),
                                     ("2", "11", 0), ("2", "13", 1), ("3", "14", 0)})
        attributes = {"10": ("1", "2"), "11": ("3",), "12": ("4",), "13": ("5",), "14": ("6", "7")}
        user_items = {"1": {"10", "11", "12"}, "2": {"11", "13"}, "3": {"14"}}
        negatives = [e for e in examples if e["label"] == (0,)]
        for e in examples:
            self.assertEqual(e["attributes"], attributes[e["item_id"][0]])
        for e in negatives:
            self.assertNotIn(e["item_id"][0], user_items[e["user_id"][0]])
        self.assertEqual(sorted(e["timestamp"][0] for e in negatives if e["user_id"] == ("1",)),
                         [0, 1, 2])

    def test_popularity_sampling_keeps_negatives_in_proportion_to_positives(self):
        lines = [f"u{i} p\n" for i in range(200)] + [f"v{i} r{i % 5}\n" for i in range(100)]
        negatives_on_p = {}
        for sampling in ("popularity", "uniform"):
            tmp = self.create_tempdir().full_path
            write(tmp, "log.txt", "".join(lines))
            config = sequence_config(sampling, seed=3)
            examples, _, stats = ingest(config, tmp, self.create_tempdir().full_path)
            self.assertEqual(stats["negatives"], 300)
            negatives = [e for e in examples if e["label"] == (0,)]
            negatives_on_p[sampling] = sum(e["item_id"] == ("p",) for e in negatives)
        # The 100 users of r0..r4 draw p with probability 200/280 (popularity) or 1/5 (uniform).
        self.assertBetween(negatives_on_p["popularity"], 55, 87)
        self.assertBetween(negatives_on_p["uniform"], 8, 35)

    def test_matched_sampling_draws_items_as_popular_as_the_positive(self):
        # Item k has 12 - k // 20 positives, each from its own user: 240 items ranked by count.
        lines = [f"u{k}_{j} i{k:03d}\n" for k in range(240) for j in range(12 - k // 20)]
        tmp = self.create_tempdir().full_path
        write(tmp, "log.txt", "".join(lines))
        config = sequence_config("matched", seed=0)
        examples, _, stats = ingest(config, tmp, self.create_tempdir().full_path)
        self.assertEqual(stats["negatives"], len(lines))
        positive_item = {e["user_id"][0]: int(e["item_id"][0][1:]) for e in examples
                         if e["label"] == (1,)}
        distances = [abs(int(e["item_id"][0][1:]) - positive_item[e["user_id"][0]])
                     for e in examples if e["label"] == (0,)]
        # Rank = item index here (more positives, then the smaller id, first); window 50.
        self.assertLessEqual(max(distances), log_reader.SampleNegatives.MATCH_WINDOW)
        self.assertNotIn(0, distances)

    def test_cikm_fixture(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "user_behavior.csv", "u1,i1,pv,1565000000\nu1,i2,buy,1565000100\n"
                                        "u2,i1,cart,1565000200\nu2,i2,click,1565000300\n")
        write(tmp, "user.csv", "u1,F,25,3\nu2,M,40,1\n")
        write(tmp, "item.csv", "i1,c1,s1,b1\ni2,c2,s1,b2\n")
        examples, bad, stats = ingest(builtin("cikm"), tmp, self.create_tempdir().full_path)
        self.assertEqual([(e["user_id"][0], e["item_id"][0], e["label"][0], e["shop"][0])
                          for e in examples], [("u1", "i1", 0, "s1"), ("u1", "i2", 1, "s1"),
                                               ("u2", "i1", 0, "s1")])
        self.assertEqual([(r["line"], r["reason"]) for r in bad], [(4, "bad_label")])
        self.assertEqual(stats["rows"], 4)

    def test_taobao_raw_files_left_join(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "raw_sample.csv", "user,time_stamp,adgroup_id,pid,nonclk,clk\n"
                                     "581738,1494137644,1,430548_1007,1,0\n"
                                     "449818,1494638778,3,430548_1007,0,1\n")
        write(tmp, "ad_feature.csv", "adgroup_id,cate_id,campaign_id,customer,brand,price\n"
                                     "1,6406,83237,1,95471,170.0\n3,4520,387991,6,207800,199.0\n")
        write(tmp, "user_profile.csv",
              "userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,"
              "shopping_level,occupation,new_user_class_level \n581738,0,5,2,5,,3,0,3\n")
        examples, bad, stats = ingest(builtin("taobao"), tmp, self.create_tempdir().full_path)
        self.assertEqual((bad, stats["examples"]), ([], 2))
        unknown, known = sorted(examples, key=lambda e: e["user_id"])  # 449818: no profile
        self.assertEqual((known["user_id"], known["new_user_class_level"], known["pvalue_level"],
                          known["price"], known["label"]), (("581738",), ("3",), ("",), (170.0,), (0,)))
        self.assertEqual(known["timestamp"], (1494137644,))
        self.assertEqual((unknown["user_id"], unknown["cms_segid"], unknown["cate_id"],
                          unknown["label"]), (("449818",), ("",), ("4520",), (1,)))

    def test_taobao_joined_real_sample(self):
        folder = os.path.join(SHARED, "taobao-sample")
        if not os.path.isdir(folder):
            self.skipTest(f"no {folder}")
        examples, bad, stats = ingest(builtin("taobao-joined"), folder,
                                      self.create_tempdir().full_path)
        # The three files repeat the same impressions: 187 of the 300 rows are exact copies of
        # an earlier row (counted independently in the README's check), dropped (dedupe: true).
        self.assertEqual((bad, stats["rows"], stats["examples"], stats["duplicate_rows"],
                          stats["dropped_duplicates"]), ([], 300, 113, 187, 187))
        first = [e for e in examples if e["user_id"] == ("874257",) and e["item_id"] == ("172298",)]
        # The same impression is in the three files, once with its click sequence.
        self.assertEqual(sorted(e["click_sequence"] for e in first), [(), ("170301", "573514")])
        self.assertEqual(first[0]["timestamp"], (1494028800,))  # 2017-05-06 00:00:00 UTC
        self.assertAllClose(first[0]["price"], (3.9,))
