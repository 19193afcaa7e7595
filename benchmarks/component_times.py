"""Wall time of every component execution recorded in a run's MLMD store (not a test).

    .venv/bin/python benchmarks/component_times.py OUT/tfx/metadata.sqlite
"""
import sys

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2


def _named_executions(path: str):
    """(execution, component name) of every execution in the sqlite MLMD store, by id."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    node_type = store.get_context_type("node")
    for execution in sorted(store.get_executions(), key=lambda e: e.id):
        nodes = [c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(execution.id)
                 if c.type_id == node_type.id]
        yield execution, nodes[0] if nodes else "?"


def executions(path: str):
    """(id, component, state, seconds) of every execution in the sqlite MLMD store, by id."""
    return [(e.id, name, metadata_store_pb2.Execution.State.Name(e.last_known_state),
             (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000)
            for e, name in _named_executions(path)]


def intervals(path: str):
    """{component: (start, end)} in seconds since the epoch, of the last execution of each."""
    return {name: (e.create_time_since_epoch / 1000, e.last_update_time_since_epoch / 1000)
            for e, name in _named_executions(path)}


def main(path: str) -> None:
    print(f"{'id':>4}  {'component':<28} {'state':<9} {'seconds':>8}")
    for execution_id, name, state, seconds in executions(path):
        print(f"{execution_id:>4}  {name:<28} {state:<9} {seconds:>8.1f}")


if __name__ == "__main__":
    main(sys.argv[1])
