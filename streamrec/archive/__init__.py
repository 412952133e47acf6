"""The event archive: the clicks topic as a Parquet dataset partitioned by event date.

``streamrec archive`` runs ``consumer.run_archiver``; the trainer reads ``reader.read_archive``;
``seed`` fills an archive from MovieLens without Kafka. ``layout`` says what is where on disk,
``writer`` how files become durable, ``dedup`` why no event is archived twice.

Nothing is imported here (import the module you need): the command line imports this package on
every run to register ``commands``, and pyarrow and Kafka are slow to load.
"""
