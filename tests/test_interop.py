"""ragtune's index inside LangChain and LlamaIndex pipelines."""

from __future__ import annotations

import sys

import pytest

from ragtune import RAG, InputError


@pytest.fixture
def indexed(rag: RAG, corpus) -> RAG:
    rag.ingest(corpus, progress=False)
    return rag


QUESTION = "NormalFloat double quantization"


# -- LangChain ----------------------------------------------------------------------------------------


def test_langchain_retriever_is_a_real_base_retriever_with_provenance(indexed: RAG):
    from langchain_core.retrievers import BaseRetriever

    retriever = indexed.as_langchain_retriever(mode="hybrid", k=2)
    docs = retriever.invoke(QUESTION)
    assert isinstance(retriever, BaseRetriever) and len(docs) == 2
    top = docs[0]
    assert top.metadata["source"].endswith("qlora.md") and "NormalFloat" in top.page_content
    assert top.id == top.metadata["chunk_id"] and top.metadata["rank"] == 1
    assert set(top.metadata["ranks"]) <= {"bm25", "dense"} and top.metadata["score"] > 0


def test_langchain_retriever_feeds_an_lcel_chain(indexed: RAG):
    from langchain_core.language_models.fake import FakeListLLM
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import PromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    prompts: list[str] = []

    def remember(prompt):
        prompts.append(prompt.to_string())
        return prompt

    retriever = indexed.as_langchain_retriever(mode="bm25", k=1)
    chain = (
        {
            "context": retriever | (lambda docs: "\n".join(d.page_content for d in docs)),
            "question": RunnablePassthrough(),
        }
        | PromptTemplate.from_template("Context: {context}\nQuestion: {question}")
        | RunnableLambda(remember)
        | FakeListLLM(responses=["QLoRA uses NF4."])
        | StrOutputParser()
    )
    assert chain.invoke(QUESTION) == "QLoRA uses NF4."
    assert "4-bit NormalFloat with double quantization" in prompts[0]


def test_langchain_retriever_works_async(indexed: RAG):
    import asyncio

    docs = asyncio.run(indexed.as_langchain_retriever(k=1).ainvoke(QUESTION))
    assert docs[0].metadata["source"].endswith("qlora.md")


# -- LlamaIndex ---------------------------------------------------------------------------------------


def test_llamaindex_retriever_gives_nodes_with_scores(indexed: RAG):
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import MetadataMode, NodeRelationship

    retriever = indexed.as_llamaindex_retriever(mode="dense", k=3)
    nodes = retriever.retrieve(QUESTION)
    assert isinstance(retriever, BaseRetriever) and len(nodes) == 3
    top = nodes[0]
    assert top.node.node_id == top.node.metadata["chunk_id"] and top.score == top.node.metadata["score"]
    assert top.node.relationships[NodeRelationship.SOURCE].node_id == top.node.metadata["document_id"]
    shown = top.node.get_content(metadata_mode=MetadataMode.LLM)
    assert "source:" in shown and "ranks:" not in shown  # evidence stays out of the LLM's prompt


def test_llamaindex_retriever_inside_a_query_engine(indexed: RAG):
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    engine = RetrieverQueryEngine.from_args(indexed.as_llamaindex_retriever(mode="bm25", k=2), llm=MockLLM())
    response = engine.query(QUESTION)
    assert [n.node.metadata["source"].rsplit("/", 1)[-1] for n in response.source_nodes][0] == "qlora.md"
    assert "NormalFloat" in str(response)  # MockLLM echoes its prompt, which holds the retrieved text


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [({"mode": "colbert"}, "mode='colbert'"), ({"k": 0}, "k=0")])
@pytest.mark.parametrize("method", ["as_langchain_retriever", "as_llamaindex_retriever"])
def test_bad_arguments_are_refused_up_front(indexed: RAG, method: str, kwargs, message: str):
    with pytest.raises(InputError, match=message):
        getattr(indexed, method)(**kwargs)


@pytest.mark.parametrize(
    ("method", "module", "extra"),
    [
        ("as_langchain_retriever", "langchain_core.retrievers", "langchain"),
        ("as_llamaindex_retriever", "llama_index.core.retrievers", "llamaindex"),
    ],
)
def test_a_missing_framework_names_the_extra_to_install(indexed: RAG, monkeypatch, method, module, extra):
    from ragtune.rag import interop

    interop._langchain_class.cache_clear()
    interop._llamaindex_class.cache_clear()
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(InputError, match=rf"pip install 'ragtune\[{extra}\]'"):
        getattr(indexed, method)()
    interop._langchain_class.cache_clear()
    interop._llamaindex_class.cache_clear()
