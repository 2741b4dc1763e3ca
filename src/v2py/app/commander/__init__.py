"""The gRPC API (v2ray-core ``app/commander``): HandlerService, StatsService and
LoggerService under 4.34's package names and Xray's, served through the outbound
tagged with ``api.tag`` (see ``docs/api.md``).

Messages come from the ``.proto`` files in ``proto/`` (4.34's package names and
field numbers); regenerate the committed modules with
``sh src/v2py/app/commander/proto/generate.sh``.
"""
