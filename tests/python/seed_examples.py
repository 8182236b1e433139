"""The seed document's Python examples, as written there, with only the gateway address
taken from the environment (SKYBRIDGE_URL, default http://localhost:8080).

Run by tests/python-seed.test.ts against a gateway whose providers point at a mock
upstream; each example prints one line `<name>: <text>`.
"""
import os
import sys

GATEWAY = os.environ.get("SKYBRIDGE_URL", "http://localhost:8080")


def openai_passthrough():
    import openai
    client = openai.OpenAI(
        base_url=f"{GATEWAY}/openai_passthrough/v1",
        api_key="dummy-key"
    )
    response = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello from passthrough"}]
    )
    return response.choices[0].message.content


def anthropic_passthrough():
    import anthropic
    client = anthropic.Anthropic(
        base_url=f"{GATEWAY}/anthropic_passthrough",
        api_key="dummy-key"
    )
    response = client.messages.create(
        model="claude-sonnet-4-20250514",
        max_tokens=1024,
        messages=[{"role": "user", "content": "hello from passthrough"}]
    )
    return response.content[0].text


def azure_openai_client():
    from openai import AzureOpenAI
    client = AzureOpenAI(
        azure_endpoint=f"{GATEWAY}/azure_passthrough",
        api_key="dummy-key",
        api_version="2024-10-21",  # overridden by key config api_version if set
    )
    response = client.chat.completions.create(
        model="gpt-4o",  # your Azure deployment name
        messages=[{"role": "user", "content": "hello from azure passthrough"}]
    )
    return response.choices[0].message.content


def azure_v1_responses():
    from openai import OpenAI
    client = OpenAI(
        base_url=f"{GATEWAY}/azure_passthrough/openai/v1/",
        api_key="dummy-key",
    )
    response = client.responses.create(
        model="gpt-4.1",  # your Azure deployment name
        input="hello from azure passthrough",
    )
    return response.output_text


def azure_anthropic():
    import anthropic
    client = anthropic.Anthropic(
        base_url=f"{GATEWAY}/azure_passthrough",
        api_key="dummy-key",
    )
    response = client.messages.create(
        model="claude-sonnet-4-20250514",
        max_tokens=1024,
        messages=[{"role": "user", "content": "hello from azure passthrough"}]
    )
    return response.content[0].text


def genai_gemini():
    from google import genai
    from google.genai.types import HttpOptions
    client = genai.Client(
        api_key="dummy-key",
        http_options=HttpOptions(base_url=f"{GATEWAY}/genai_passthrough")
    )
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="hello from passthrough"
    )
    return response.text


def genai_vertex():
    from google import genai
    from google.genai.types import HttpOptions
    client = genai.Client(
        vertexai=True,
        api_key="dummy-key",
        http_options=HttpOptions(base_url=f"{GATEWAY}/genai_passthrough")
    )
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="hello from vertex passthrough"
    )
    return response.text


EXAMPLES = [openai_passthrough, anthropic_passthrough, azure_openai_client, azure_v1_responses, azure_anthropic, genai_gemini, genai_vertex]

if __name__ == "__main__":
    only = set(sys.argv[1:])
    failed = 0
    for example in EXAMPLES:
        if only and example.__name__ not in only:
            continue
        try:
            print(f"{example.__name__}: {example()}", flush=True)
        except Exception as err:  # report every example, not just the first failure
            failed += 1
            print(f"{example.__name__}: ERROR {type(err).__name__}: {err}", flush=True)
    sys.exit(1 if failed else 0)
