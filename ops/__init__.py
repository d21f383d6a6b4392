"""Operations. The base every layer imports: settings, logging, storage, SQS queues, local
runtime, passwords, idle shutdown and metrics. The commands that drive the system
(``just dev``, migrate, provision, workers, the scheduler, maintenance) are in
``ops.commands``."""
