"""MovieLens parsing on hand-written lines, and the Beam ExampleGen transform on tiny folders."""
import gzip
import os

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
import tensorflow as tf

from components import example_io, movielens

ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"
ML1M_MOVIES = ("1::Toy Story (1995)::Animation|Children's|Comedy\n"
               "2::Caf\xe9 au lait (Gazon maudit) (1995)::Comedy\n")
ML1M_RATINGS = "1::1::5::978300760\n2::2::3::978302109\n1::2::4::978301968\n"

ML100K_USERS = ("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                "7\t57\tM\tadministrator\t91344\n")
ML100K_ITEMS = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                "3\tFour Rooms\t1995\tThriller\n")
ML100K_RATINGS = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                  "7\t3\t4\t881250949\n")


def write(directory, name, text, encoding="utf-8", gz=False):
    path = os.path.join(directory, name)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(text.encode(encoding))
    return path


class ParseTest(tf.test.TestCase):

    def test_ml1m_lines(self):
        self.assertEqual(movielens.parse_rating("1::1193::5::978300760", "ml-1m"),
                         ("1", "1193", 5, 978300760))
        self.assertEqual(movielens.parse_user("2::M::56::16::70072", "ml-1m"),
                         ("2", {"gender": "M", "age": "56", "occupation": "16", "zip_code": "70072"}))
        item, feats = movielens.parse_item(
            "1::Toy Story (1995)::Animation|Children's|Comedy", "ml-1m")
        self.assertEqual(item, "1")
        self.assertEqual(feats, {"year": "1995", "title": ["Toy", "Story"],
                                 "genres": ["Animation", "Children's", "Comedy"]})
        # Only the trailing "(YYYY)" is the year; earlier parentheses stay in the title.
        _, feats = movielens.parse_item("5::Seven (Se7en) (1995)::Crime|Thriller", "ml-1m")
        self.assertEqual(feats["year"], "1995")
        self.assertEqual(feats["title"], ["Seven", "Se7en"])

    def test_ml100k_lines(self):
        self.assertEqual(movielens.parse_rating("196\t242\t3\t881250949", "ml-100k"),
                         ("196", "242", 3, 881250949))
        self.assertEqual(movielens.parse_user("1\t24\tM\ttechnician\t85711", "ml-100k"),
                         ("1", {"gender": "M", "age": "24", "occupation": "technician",
                                "zip_code": "85711"}))
        self.assertEqual(movielens.parse_item("1\tToy Story\t1995\tAnimation Children's Comedy",
                                              "ml-100k"),
                         ("1", {"year": "1995", "title": ["Toy", "Story"],
                                "genres": ["Animation", "Children's", "Comedy"]}))

    def test_bad_lines_say_why(self):
        with self.assertRaisesRegex(movielens.BadRecord, "expected 4 fields"):
            movielens.parse_rating("1::2::3", "ml-1m")
        with self.assertRaisesRegex(movielens.BadRecord, "rating is not a number: 'x'"):
            movielens.parse_rating("1::2::x::978300760", "ml-1m")
        with self.assertRaisesRegex(movielens.BadRecord, "timestamp is not a number"):
            movielens.parse_rating("1::2::3::yesterday", "ml-1m")
        with self.assertRaisesRegex(movielens.BadRecord, "empty user or item id"):
            movielens.parse_rating("::2::3::978300760", "ml-1m")
        with self.assertRaisesRegex(movielens.BadRecord, "outside 1..5"):
            movielens.parse_rating("1::2::9::978300760", "ml-1m")

    def test_layout_detection(self):
        tmp = self.get_temp_dir()
        with self.assertRaisesRegex(FileNotFoundError, "holds no MovieLens data"):
            movielens.detect_layout(tmp)
        for name in ("users.dat", "movies.dat", "ratings.dat.gz"):
            write(tmp, name, "")
        files = movielens.detect_layout(tmp)
        self.assertEqual(files["layout"], "ml-1m")
        self.assertEqual(files["ratings"], os.path.join(tmp, "ratings.dat.gz"))


class ExampleGenTest(tf.test.TestCase):

    def _run(self, directory, expected):
        with test_pipeline.TestPipeline() as p:
            examples = p | movielens.MovieLensToExample(  # pylint: disable=no-value-for-parameter
                {"input_base": directory}, "*")
            decoded = examples | beam.Map(
                lambda e: sorted((k, tuple(v)) for k, v in example_io.from_example(e).items()))
            assert_that(decoded, equal_to([sorted(e.items()) for e in expected]))

    def test_ml1m_gzip_latin1(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "users.dat", ML1M_USERS)
        write(tmp, "movies.dat", ML1M_MOVIES, encoding="latin-1")
        write(tmp, "ratings.dat.gz", ML1M_RATINGS, gz=True)
        user1 = {"gender": (b"F",), "age": (b"1",), "occupation": (b"10",), "zip_code": (b"48067",)}
        user2 = {"gender": (b"M",), "age": (b"56",), "occupation": (b"16",), "zip_code": (b"70072",)}
        movie1 = {"year": (b"1995",), "title": (b"Toy", b"Story"),
                  "genres": (b"Animation", b"Children's", b"Comedy")}
        movie2 = {"year": (b"1995",), "genres": (b"Comedy",),
                  "title": tuple(w.encode() for w in ("Café", "au", "lait", "Gazon", "maudit"))}
        self._run(tmp, [
            {"user_id": (b"1",), "item_id": (b"1",), **user1, **movie1, "timestamp": (978300760,),
             "rating": (5,), "label": (1,)},
            {"user_id": (b"2",), "item_id": (b"2",), **user2, **movie2, "timestamp": (978302109,),
             "rating": (3,), "label": (0,)},
            {"user_id": (b"1",), "item_id": (b"2",), **user1, **movie2, "timestamp": (978301968,),
             "rating": (4,), "label": (1,)},
        ])

    def test_ml100k_with_headers(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "ml-100k.user", ML100K_USERS)
        write(tmp, "ml-100k.item", ML100K_ITEMS)
        write(tmp, "ml-100k.inter", ML100K_RATINGS)
        self._run(tmp, [{
            "user_id": (b"7",), "item_id": (b"3",), "gender": (b"M",), "age": (b"57",),
            "occupation": (b"administrator",), "zip_code": (b"91344",), "year": (b"1995",),
            "title": (b"Four", b"Rooms"), "genres": (b"Thriller",), "timestamp": (881250949,),
            "rating": (4,), "label": (1,)}])

    def test_bad_rating_line_fails_with_the_line(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "users.dat", ML1M_USERS)
        write(tmp, "movies.dat", ML1M_MOVIES, encoding="latin-1")
        write(tmp, "ratings.dat", ML1M_RATINGS + "1::1::five::978300760\n")
        with self.assertRaisesRegex(Exception, r"bad ratings line b'1::1::five::978300760'.*"
                                               r"rating is not a number"):
            self._run(tmp, [])

    def test_unknown_item_fails(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "users.dat", ML1M_USERS)
        write(tmp, "movies.dat", ML1M_MOVIES, encoding="latin-1")
        write(tmp, "ratings.dat", "1::99::4::978300760\n")
        with self.assertRaisesRegex(Exception, "item '99' is not in the items file"):
            self._run(tmp, [])
