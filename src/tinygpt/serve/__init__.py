"""`tinygpt serve`: any run, base or chat, behind OpenAI's API, with a playground page.

    engine.py   continuous batching: requests join one running Decoder per model and leave it when done
    schemas.py  the request bodies (pydantic), with OpenAI's names and ranges
    app.py      the FastAPI routes: /v1/models, /v1/completions, /v1/chat/completions, /health, /
    static/     index.html, the playground (inline script and style: it works offline)

Needs the serve extra: pip install 'tinygpt[serve]'.
"""
