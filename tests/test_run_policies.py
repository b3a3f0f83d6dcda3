"""What run_ocr decides from its options, its input and its cluster (pipeline/plan.py): the row id column,
and the model actors' count, threads, batch size and CPU/GPU shares."""

from __future__ import annotations

import pytest

from pipeline.errors import UserError
from pipeline.plan import (ActorPlan, choose_id_column, largest_node_cpus, plan_actor_block, plan_actors,
                           plan_window)
from pipeline.read import Source

PARQUET_WITH_ID = Source("parquet", ["a.parquet"], ["id", "image", "text"], rows=3)
PARQUET_NO_ID = Source("parquet", ["a.parquet"], ["key", "image"], rows=3)
IMAGES = Source("images", ["a.png", "b.png"], ["image", "path"])


# --- the row id ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("requested, source, expected", [
    (None, PARQUET_WITH_ID, "id"),          # Parquet: `id` where there is one
    (None, PARQUET_NO_ID, None),            # ... else none (repeats and nulls are then not counted)
    (None, IMAGES, "path"),                 # image files: their path
    ("text", PARQUET_WITH_ID, "text"),      # --id-column wins
    ("key", PARQUET_NO_ID, "key"),
    ("image", IMAGES, "image"),
])
def test_id_column_default_and_choice(requested, source, expected):
    assert choose_id_column(requested, source, resume=False) == expected
    if expected:
        assert choose_id_column(requested, source, resume=True) == expected


def test_id_column_not_in_the_input_is_refused():
    with pytest.raises(UserError, match=r"^id column 'page' not in the input; columns are: id, image, text$"):
        choose_id_column("page", PARQUET_WITH_ID, resume=False)
    with pytest.raises(UserError, match=r"id column 'id' not in the input; columns are: image, path"):
        choose_id_column("id", IMAGES, resume=True)


def test_resume_needs_an_id_column():
    with pytest.raises(UserError, match=r"^--resume needs a unique id column \(--id-column\); columns are: key, "
                                        r"image$"):
        choose_id_column(None, PARQUET_NO_ID, resume=True)


# --- the model actors ----------------------------------------------------------------------------------

def _node(cpus: float, alive: bool = True, **resources) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, **resources}}


def test_largest_node_cpus_counts_live_nodes_only_and_at_least_one():
    assert largest_node_cpus([_node(4), _node(16), _node(8)]) == 16          # per node, not the cluster's 28
    assert largest_node_cpus([_node(4), _node(64, alive=False)]) == 4
    assert largest_node_cpus([_node(2.5)]) == 2
    assert largest_node_cpus([]) == 1
    assert largest_node_cpus([{"Alive": True, "Resources": {"GPU": 1}}]) == 1   # a node without CPUs
    assert largest_node_cpus([_node(0.5)]) == 1


def test_cpu_defaults_single_threaded_actors_on_seven_eighths_of_the_cpus_leaving_one_to_read_and_write():
    plan = plan_actors(0.0, None, None, None, node_cpus=2, cluster_gpus=0)
    assert plan == ActorPlan(actors=2, threads=1, batch_size=128, num_cpus=0.5, num_gpus=None,
                             true_multi_threading=True)
    assert plan_actors(0.0, None, None, None, node_cpus=8, cluster_gpus=0) == ActorPlan(
        actors=7, threads=1, batch_size=128, num_cpus=1.0, num_gpus=None, true_multi_threading=True)
    assert plan_actors(0.0, None, None, None, node_cpus=16, cluster_gpus=0).actors == 14
    assert plan_actors(0.0, 1, None, None, node_cpus=8, cluster_gpus=0).threads == 8     # one actor: all CPUs
    # a small job: no more actors than two 512-row windows each fill, the others' threads on its CPUs
    assert plan_actors(0.0, None, None, None, node_cpus=8, cluster_gpus=0, rows=300) == ActorPlan(
        actors=1, threads=8, batch_size=128, num_cpus=1.0, num_gpus=None, true_multi_threading=True)
    assert plan_actors(0.0, None, None, None, node_cpus=8, cluster_gpus=0, rows=3000).actors == 3
    assert plan_actors(0.0, None, None, None, node_cpus=2, cluster_gpus=0, rows=8650).actors == 2
    assert plan_actors(0.0, 4, None, None, node_cpus=8, cluster_gpus=0, rows=300).actors == 4   # --actors wins
    assert plan_actors(0.0, 4, None, None, node_cpus=8, cluster_gpus=0).num_cpus == 1.0        # 7 CPUs for 4
    assert plan_actors(0.0, 4, None, None, node_cpus=4, cluster_gpus=0).num_cpus == 0.75       # 3 CPUs for 4
    assert plan_actors(0.0, 4, None, None, node_cpus=3, cluster_gpus=0).num_cpus == 0.5
    assert plan_actors(0.0, None, None, None, node_cpus=1, cluster_gpus=0) == ActorPlan(      # nothing to spare
        actors=1, threads=1, batch_size=128, num_cpus=0.0, num_gpus=None, true_multi_threading=True)


def test_window_gives_each_actor_two_blocks_of_a_small_input():
    assert plan_window(None, 100_000, 2) == 8192
    assert plan_window(None, 8650, 2) == 2163          # 4 blocks
    assert plan_window(None, 8650, 1) == 4325
    assert plan_window(None, 300, 2) == 512            # never tiny windows: padding
    assert plan_window(2048, 100_000, 2) == 2048       # --window wins


def test_actors_take_a_window_in_equal_pieces_of_at_most_2048_rows():
    assert plan_actor_block(8192) == 2048
    assert plan_actor_block(2163) == 1082              # 2 pieces, not 2,048 + 115
    assert plan_actor_block(2048) == 2048              # whole: no split
    assert plan_actor_block(512) == 512
    assert plan_actor_block(10_000) == 2000


def test_gpu_defaults_one_actor_per_gpu_share():
    plan = plan_actors(1.0, None, None, None, node_cpus=16, cluster_gpus=4)
    assert plan == ActorPlan(actors=4, threads=1, batch_size=512, num_cpus=1, num_gpus=1.0,
                             true_multi_threading=False)
    assert plan_actors(0.5, None, None, None, node_cpus=16, cluster_gpus=4).actors == 8
    assert plan_actors(0.3, None, None, None, node_cpus=16, cluster_gpus=1).actors == 3
    assert plan_actors(1.0, None, None, None, node_cpus=16, cluster_gpus=0).actors == 1        # at least one


def test_given_options_win_and_zero_counts_as_not_given():
    plan = plan_actors(0.0, 3, 2, 64, node_cpus=8, cluster_gpus=0)
    assert (plan.actors, plan.threads, plan.batch_size) == (3, 2, 64)
    assert plan_actors(1.0, 2, 6, 100, node_cpus=8, cluster_gpus=8) == ActorPlan(
        actors=2, threads=6, batch_size=100, num_cpus=1, num_gpus=1.0, true_multi_threading=False)
    assert plan_actors(0.0, 0, 0, 0, node_cpus=8, cluster_gpus=0) == plan_actors(0.0, None, None, None, node_cpus=8,
                                                                                 cluster_gpus=0)
