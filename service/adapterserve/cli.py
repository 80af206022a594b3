"""`adapterserve serve | train`."""

from __future__ import annotations

import argparse
import sys


def _serve(args) -> int:
    import uvicorn

    from .logs import setup_logging
    from .main import create_app
    from .settings import SettingsError, load_settings

    overrides = {
        k: v
        for k, v in dict(
            host=args.host,
            port=args.port,
            store=args.store,
            backbone=args.backbone,
            device=args.device,
            dtype=args.dtype,
            runtime=args.runtime,
            admin_port=args.admin_port,
        ).items()
        if v is not None
    }
    try:
        settings = load_settings(**overrides)
    except SettingsError as e:  # stop before anything starts, naming the setting and the valid choices
        print(f"adapterserve: configuration error: {e}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_json)
    app = create_app(settings)

    class DrainingServer(uvicorn.Server):
        """On SIGTERM/SIGINT readiness turns false at once; uvicorn then stops accepting connections,
        lets in-flight requests finish (up to the drain timeout), and the lifespan drains the batcher."""

        def handle_exit(self, sig, frame):
            state = app.state.adapterserve
            if state is not None:
                state.draining = True
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) + 1,
    )
    sockets = None
    if settings.admin_port and settings.admin_port != settings.port:
        # One server, two listening sockets; the admin routes answer only on the admin one (deps.require_admin).
        admin = uvicorn.Config(app, host=settings.host, port=settings.admin_port)
        sockets = [config.bind_socket(), admin.bind_socket()]
    DrainingServer(config).run(sockets=sockets)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adapterserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve adapters over HTTP")
    serve.add_argument("--host", help="bind address (ADAPTERSERVE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (ADAPTERSERVE_PORT, default 8080)")
    serve.add_argument("--store", help="adapter store: a directory or s3://bucket/prefix (ADAPTERSERVE_STORE)")
    serve.add_argument("--backbone", help="backbone folder or hub id (ADAPTERSERVE_BACKBONE)")
    serve.add_argument(
        "--admin-port",
        type=int,
        help="serve /admin only on this port (ADAPTERSERVE_ADMIN_PORT; default: the main port)",
    )
    serve.add_argument("--device", choices=["auto", "cpu", "cuda"], help="ADAPTERSERVE_DEVICE")
    serve.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16", "int8"], help="ADAPTERSERVE_DTYPE")
    serve.add_argument("--runtime", choices=["auto", "torch", "onnx"], help="ADAPTERSERVE_RUNTIME")
    serve.set_defaults(func=_serve)
    try:
        from .training import cli as train_cli

        train_cli.add_parser(sub)
        sub.choices["train"].set_defaults(func=train_cli.run)
    except ImportError:  # pragma: no cover - the training package ships with the service
        pass
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
