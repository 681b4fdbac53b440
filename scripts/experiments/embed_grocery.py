import sys, os, csv, tomllib, numpy as np, onnxruntime as ort, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),".."))
from reference_embed import load_rgb, preprocess
from PIL import Image, ImageOps
G=os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../../shared/data/grocery")
paths=[]
for k in ["catalog","photos-train","photos-val"]:
    paths+= [os.path.join(G,r["image"]) for r in csv.DictReader(open(os.path.join(G,k+".csv")))]
mdir=sys.argv[1]; tag=sys.argv[2]
m=tomllib.load(open(mdir+"/model.toml","rb"))
spec=m["input"]
so=ort.SessionOptions(); so.intra_op_num_threads=2
sess=ort.InferenceSession(os.path.join(mdir,m["file"]),so,providers=["CPUExecutionProvider"])
outs={"orig":[],"flip":[]}
t=time.time()
B=16
for i in range(0,len(paths),B):
    ims=[load_rgb(p) for p in paths[i:i+B]]
    for key,f in [("orig",lambda x:x),("flip",ImageOps.mirror)]:
        x=np.stack([preprocess(f(im),spec) for im in ims])
        e=sess.run([m["output"]["name"]],{spec["name"]:x})[0].reshape(len(x),-1)
        outs[key].append(e)
    if i%320==0: print(i,time.time()-t,file=sys.stderr)
np.savez(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+f"/{tag}.npz",paths=np.array(paths),**{k:np.concatenate(v) for k,v in outs.items()})
